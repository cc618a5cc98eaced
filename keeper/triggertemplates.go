package keeper

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/koipond/koipond/behaviors"
)

// refVar finds the payload fields a template reads (.labels.x, .event),
// so a stored template can be checked with placeholders.
var refVar = regexp.MustCompile(`\.([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?`)

// placeholderData returns a payload holding "placeholder" in every field
// the templates in texts read.
func placeholderData(texts ...string) map[string]any {
	labels := map[string]any{}
	data := map[string]any{"labels": labels, "event": "placeholder"}
	for _, t := range texts {
		for _, m := range refVar.FindAllStringSubmatch(t, -1) {
			switch {
			case m[1] == "labels" && m[2] != "":
				labels[m[2]] = "placeholder"
			case m[1] != "labels":
				data[m[1]] = "placeholder"
			}
		}
	}
	return data
}

// render executes text as a template over the call's payload; a missing
// field is an error. Templates are bounded (behaviors.BoundedTemplate):
// no range loops, printf widths under 1,000, at most MaxTriggerBody bytes
// of output each. An unbounded one stored by an admin ran on every
// signed call: 45 bytes of template took 10 s and 4.9 GiB.
func render(field, text string, data map[string]any) (string, *Error) {
	if !strings.Contains(text, "{{") {
		return text, nil
	}
	if len(text) > maxTemplateLen {
		return "", invalid(field, "template is %d bytes; at most %d", len(text), maxTemplateLen)
	}
	t, err := behaviors.ParseBoundedTemplate(field, "trigger template", MaxTriggerBody, text)
	if err != nil {
		return "", invalid(field, "%v", err)
	}
	out, err := t.Execute(data)
	if err != nil {
		return "", invalid(field, "template fails on the payload: %v", err)
	}
	return out, nil
}

// strings returns every string in a decoded JSON value.
func jsonStrings(v any, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
	case []any:
		for _, e := range x {
			jsonStrings(e, out)
		}
	case map[string]any:
		for _, e := range x {
			jsonStrings(e, out)
		}
	}
}

// renderJSON renders every string of a decoded JSON value in place.
func renderJSON(field string, v any, data map[string]any) (any, *Error) {
	switch x := v.(type) {
	case string:
		return render(field, x, data)
	case []any:
		for i, e := range x {
			r, err := renderJSON(fmt.Sprintf("%s[%d]", field, i), e, data)
			if err != nil {
				return nil, err
			}
			x[i] = r
		}
	case map[string]any:
		for k, e := range x {
			r, err := renderJSON(field+"."+k, e, data)
			if err != nil {
				return nil, err
			}
			x[k] = r
		}
	}
	return v, nil
}

// renderRun turns an action's run template into a checked RunSpec for a
// payload: strings rendered, the payload's labels added to the run's (the
// template's own labels win), then the spec's checks. field prefixes error
// fields (e.g. "actions[0].run").
func renderRun(field string, raw json.RawMessage, data map[string]any) (*RunSpec, *Error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, invalid(field, "not JSON: %v", err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, invalid(field, "must be a run spec object")
	}
	v, err := renderJSON(field, v, data)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(v)
	sd := json.NewDecoder(bytes.NewReader(b))
	sd.DisallowUnknownFields()
	var spec RunSpec
	if err := sd.Decode(&spec); err != nil {
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &ute):
			return nil, invalid(field+"."+ute.Field, "must be %s, not a JSON %s", ute.Type, ute.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return nil, invalid(field+"."+f, "unknown field %q", f)
		}
		return nil, invalid(field, "%v", err)
	}
	if labels, ok := data["labels"].(map[string]any); ok && len(labels) > 0 {
		if spec.Labels == nil {
			spec.Labels = map[string]string{}
		}
		for k, v := range labels {
			if _, set := spec.Labels[k]; !set {
				spec.Labels[k] = fmt.Sprint(v)
			}
		}
	}
	if err := spec.check(); err != nil {
		e := *err
		e.Field = strings.TrimSuffix(field+"."+e.Field, ".")
		return nil, &e
	}
	return &spec, nil
}

// renderMap renders the values of a string map.
func renderMap(field string, m map[string]string, data map[string]any) (map[string]string, *Error) {
	if m == nil {
		return nil, nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		r, err := render(field+"."+k, v, data)
		if err != nil {
			return nil, err
		}
		out[k] = r
	}
	return out, nil
}
