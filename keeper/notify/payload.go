package notify

import (
	"cmp"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/koipond/koipond/keeper/state"
)

// JSONPayload is the body of a json-format delivery.
type JSONPayload struct {
	Notice
	Webhook string            `json:"webhook"`
	Links   map[string]string `json:"links,omitempty"`
}

// payload builds a delivery's body in the webhook's format.
func (n *Notifier) payload(h *state.Webhook, nt Notice) ([]byte, error) {
	links := n.cfg.Links(nt.Run)
	if h.Format != "slack" {
		return json.Marshal(JSONPayload{Notice: nt, Webhook: h.Name, Links: links})
	}
	return json.Marshal(slackPayload(nt, links))
}

// slackText is a Slack text object.
type slackText struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	Emoji bool   `json:"emoji,omitempty"`
}

// slackBlock is a Slack Block Kit block (header or section).
type slackBlock struct {
	Type   string      `json:"type"`
	Text   *slackText  `json:"text,omitempty"`
	Fields []slackText `json:"fields,omitempty"`
}

// SlackMessage is the body of a Slack incoming-webhook call: text is the
// notification fallback, blocks the rendered message.
type SlackMessage struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

// slackEscaper escapes the three characters Slack treats as markup; built
// once, as a Replacer builds its tables on first use.
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

func slackEscape(s string) string { return slackEscaper.Replace(s) }

// slackPayload renders a notice as a Slack incoming-webhook message: a
// header (the title), a section with the text and a link to the run, and
// a section with up to ten fields (Slack's limit).
func slackPayload(nt Notice, links map[string]string) SlackMessage {
	text := nt.Text
	if text == "" {
		text = nt.Title
	}
	body := slackEscape(text)
	if u := links["ui"]; u != "" {
		body += fmt.Sprintf("\n<%s|Run %s>", slackEscape(u), slackEscape(cmp.Or(nt.RunName, nt.Run)))
	}
	m := SlackMessage{Text: Clip(nt.Title+": "+text, 3000), Blocks: []slackBlock{
		{Type: "header", Text: &slackText{Type: "plain_text", Text: Clip(nt.Title, 150), Emoji: true}},
		{Type: "section", Text: &slackText{Type: "mrkdwn", Text: Clip(body, 3000)}},
	}}
	fields := []slackText{{Type: "mrkdwn", Text: "*Kind*\n" + nt.Kind}}
	if nt.Actor != "" {
		fields = append(fields, slackText{Type: "mrkdwn", Text: "*By*\n" + slackEscape(nt.Actor)})
	}
	keys := make([]string, 0, len(nt.Fields))
	for k := range nt.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if len(fields) == 10 {
			break
		}
		fields = append(fields, slackText{Type: "mrkdwn", Text: Clip("*"+slackEscape(k)+"*\n"+slackEscape(nt.Fields[k]), 2000)})
	}
	m.Blocks = append(m.Blocks, slackBlock{Type: "section", Fields: fields})
	return m
}
