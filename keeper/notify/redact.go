package notify

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/koipond/koipond/keeper/state"
)

// Who sees how much of a webhook URL (a Slack hook URL, a path or query
// token: the URL is a credential of its receiver, written once):
//   - viewers and operators, the audit log, delivery errors and the log:
//     scheme and host only (HostOnlyURL);
//   - admins, who add and replace webhooks: RedactURL, the path without
//     its secret parts;
//   - nobody reads the full URL back, as nobody reads the secret.

// HostOnlyURL reduces a webhook URL to its scheme and host, with "/…" when
// it has more (a path or a query).
func HostOnlyURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(unparseable URL)"
	}
	out := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Opaque != "" || u.Fragment != "" {
		out += "/…"
	}
	return out
}

// RedactURL hides what in a webhook URL is a credential: user info, query
// values and, for Slack URLs (whose path is the secret, whatever format
// the webhook sends), the last path segment.
func RedactURL(raw, format string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q.Set(k, "***")
		}
		u.RawQuery = q.Encode()
	}
	if format == "slack" || strings.EqualFold(u.Hostname(), "hooks.slack.com") {
		if i := strings.LastIndex(u.Path, "/"); i >= 0 && i < len(u.Path)-1 {
			u.Path = u.Path[:i+1] + "***"
		}
	}
	return strings.ReplaceAll(u.String(), "%2A%2A%2A", "***")
}

// deliveryError is err as viewers may read it: net/http's errors quote the
// whole URL (a Slack hook's secret path, a ?token=), so the URL is replaced
// by its scheme and host.
func deliveryError(hook *state.Webhook, err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Sprintf("%s %s: %v", ue.Op, HostOnlyURL(hook.URL), ue.Err)
	}
	return strings.ReplaceAll(err.Error(), hook.URL, HostOnlyURL(hook.URL))
}
