package behaviors

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"text/template/parse"
)

// MaxSpecTemplateOutput bounds what a run spec template renders for one
// koi: a handshake header value.
const MaxSpecTemplateOutput = 4096

// SpecData is what a run spec template sees for one koi.
type SpecData struct {
	Index         int
	Token, UserID string
}

// SpecTemplate is a per-koi template of a run spec (a websocket handshake
// header value such as "Bearer {{.Token}}"), rendered by schools for every
// koi. Such templates arrive over the network, so they are bounded: no
// range loops or template calls, printf without large widths, and at most
// MaxSpecTemplateOutput bytes of output.
type SpecTemplate struct{ t *template.Template }

// ParseSpecTemplate compiles src and renders it once for koi 0, so that a
// template that cannot work is refused where it is given.
func ParseSpecTemplate(name, src string) (*SpecTemplate, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(template.FuncMap{"printf": boundedPrintf}).Parse(src)
	if err != nil {
		return nil, fmt.Errorf("bad template: %w", err)
	}
	if err := refuseLoops(t.Tree.Root); err != nil {
		return nil, err
	}
	if len(t.Templates()) > 1 {
		return nil, errors.New("define and block are not allowed")
	}
	st := &SpecTemplate{t}
	if _, err := st.Render(SpecData{}); err != nil {
		return nil, fmt.Errorf("template fails for koi 0 (it may use {{.Index}}, {{.Token}} and {{.UserID}}): %w", err)
	}
	return st, nil
}

// Render renders the template for one koi.
func (s *SpecTemplate) Render(d SpecData) (string, error) {
	var w capWriter
	if err := s.t.Execute(&w, d); err != nil {
		return "", err
	}
	return w.b.String(), nil
}

func refuseLoops(n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := refuseLoops(c); err != nil {
				return err
			}
		}
	case *parse.RangeNode:
		return errors.New("range is not allowed in a run spec template")
	case *parse.TemplateNode:
		return errors.New("{{template}} is not allowed in a run spec template")
	case *parse.IfNode:
		if err := refuseLoops(n.List); err != nil {
			return err
		}
		return refuseLoops(n.ElseList)
	case *parse.WithNode:
		if err := refuseLoops(n.List); err != nil {
			return err
		}
		return refuseLoops(n.ElseList)
	}
	return nil
}

// bigWidth finds printf widths or precisions of four digits or more, and
// widths taken from arguments.
var bigWidth = regexp.MustCompile(`%[-+# 0]*(\d{4,}|\*|\d*\.(\d{4,}|\*))`)

func boundedPrintf(format string, args ...any) (string, error) {
	if bigWidth.MatchString(format) {
		return "", fmt.Errorf("printf %q: widths and precisions are at most 999", format)
	}
	return fmt.Sprintf(format, args...), nil
}

// capWriter keeps at most MaxSpecTemplateOutput bytes and fails past them.
type capWriter struct{ b strings.Builder }

func (w *capWriter) Write(p []byte) (int, error) {
	if w.b.Len()+len(p) > MaxSpecTemplateOutput {
		return 0, fmt.Errorf("renders more than %d bytes", MaxSpecTemplateOutput)
	}
	return w.b.Write(p)
}
