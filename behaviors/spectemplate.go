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
// koi. Such templates arrive over the network, so they are bounded
// (BoundedTemplate), to MaxSpecTemplateOutput bytes of output.
type SpecTemplate struct{ t *BoundedTemplate }

// ParseSpecTemplate compiles src and renders it once for koi 0, so that a
// template that cannot work is refused where it is given.
func ParseSpecTemplate(name, src string) (*SpecTemplate, error) {
	t, err := ParseBoundedTemplate(name, "run spec template", MaxSpecTemplateOutput, src)
	if err != nil {
		return nil, err
	}
	st := &SpecTemplate{t}
	if _, err := st.Render(SpecData{}); err != nil {
		return nil, fmt.Errorf("template fails for koi 0 (it may use {{.Index}}, {{.Token}} and {{.UserID}}): %w", err)
	}
	return st, nil
}

// Render renders the template for one koi.
func (s *SpecTemplate) Render(d SpecData) (string, error) { return s.t.Execute(d) }

// BoundedTemplate is a Go template (missing keys are errors) that
// cannot run or print without bound, for templates that come over the
// network and run where they must not hold things up (a school rendering
// a header for each koi, the keeper rendering a trigger call): no range
// loops, {{template}} calls, define or block, so it runs in time linear
// in its size; printf widths and precisions at most 999; and its output
// at most a given number of bytes.
type BoundedTemplate struct {
	t      *template.Template
	output int
}

// ParseBoundedTemplate compiles src; what names the kind of template in
// errors ("run spec template"); output bounds what Execute writes.
func ParseBoundedTemplate(name, what string, output int, src string) (*BoundedTemplate, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(template.FuncMap{"printf": boundedPrintf}).Parse(src)
	if err != nil {
		return nil, fmt.Errorf("bad template: %w", err)
	}
	if err := refuseLoops(t.Tree.Root, what); err != nil {
		return nil, err
	}
	if len(t.Templates()) > 1 {
		return nil, errors.New("define and block are not allowed")
	}
	return &BoundedTemplate{t: t, output: output}, nil
}

// Execute renders the template over data.
func (b *BoundedTemplate) Execute(data any) (string, error) {
	w := capWriter{max: b.output}
	if err := b.t.Execute(&w, data); err != nil {
		return "", err
	}
	return w.b.String(), nil
}

func refuseLoops(n parse.Node, what string) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := refuseLoops(c, what); err != nil {
				return err
			}
		}
	case *parse.RangeNode:
		return fmt.Errorf("range is not allowed in a %s", what)
	case *parse.TemplateNode:
		return fmt.Errorf("{{template}} is not allowed in a %s", what)
	case *parse.IfNode:
		if err := refuseLoops(n.List, what); err != nil {
			return err
		}
		return refuseLoops(n.ElseList, what)
	case *parse.WithNode:
		if err := refuseLoops(n.List, what); err != nil {
			return err
		}
		return refuseLoops(n.ElseList, what)
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

// capWriter keeps at most max bytes and fails past them.
type capWriter struct {
	b   strings.Builder
	max int
}

func (w *capWriter) Write(p []byte) (int, error) {
	if w.b.Len()+len(p) > w.max {
		return 0, fmt.Errorf("renders more than %d bytes", w.max)
	}
	return w.b.Write(p)
}
