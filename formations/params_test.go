package formations

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/koipond/koipond/behaviors"
)

const paramsSeq = `"sequence": {"steps": [{"request": {"type": "api", "method": "x", "args": {"c": "{{ get \"channel_id\" }}"}}}]}`

func parseParamsFormation(t *testing.T, params string) (*Formation, behaviors.Diagnostics) {
	t.Helper()
	src := "{\"name\": \"p\", \"begin_within_secs\": 1, \"percent\": 50,\n \"params\": " + params + ",\n " + paramsSeq + "}"
	return Parse(behaviors.File{Name: "f.json", Data: []byte(src)})
}

// The seed formation declares channel_id as required, with a doc.
func TestSeedFormationDeclaresChannel(t *testing.T) {
	f, diags := Load("../examples/seed/announcement-reaction.formation.json")
	if f == nil {
		t.Fatal(diags)
	}
	if !f.ParamsDeclared || len(f.Params) != 1 || f.Params[0].Name != "channel_id" || !f.Params[0].Required || f.Params[0].Doc == "" {
		t.Fatalf("params = %+v (declared %v)", f.Params, f.ParamsDeclared)
	}
	_, err := f.ResolveParams(nil)
	var pe *ParamError
	if !errors.As(err, &pe) || len(pe.Missing) != 1 || pe.Missing[0] != "channel_id" {
		t.Fatalf("launch without channel_id: %v", err)
	}
}

func TestParamsDeclared(t *testing.T) {
	f, diags := parseParamsFormation(t, `[{"name": "channel_id", "required": true, "doc": "where"},
		{"name": "emoji", "default": "fish"}, {"name": "note"}]`)
	if f == nil {
		t.Fatal(diags)
	}
	want := []Param{{Name: "channel_id", Required: true, Doc: "where"}, {Name: "emoji", Default: "fish"}, {Name: "note"}}
	if len(f.Params) != 3 || f.Params[0] != want[0] || f.Params[1] != want[1] || f.Params[2] != want[2] {
		t.Fatalf("params = %+v", f.Params)
	}
	tests := []struct {
		name    string
		given   map[string]string
		want    map[string]string
		missing []string
		unknown []string
	}{
		// the default fills in; an optional one without a default stays out
		{"defaults", map[string]string{"channel_id": "C1"}, map[string]string{"channel_id": "C1", "emoji": "fish"}, nil, nil},
		// a given value beats the default
		{"override", map[string]string{"channel_id": "C1", "emoji": "whale", "note": "n"}, map[string]string{"channel_id": "C1", "emoji": "whale", "note": "n"}, nil, nil},
		// missing required: named
		{"missing", map[string]string{"emoji": "whale"}, nil, []string{"channel_id"}, nil},
		// an empty value does not count as given
		{"empty required", map[string]string{"channel_id": ""}, nil, []string{"channel_id"}, nil},
		// unknown names are refused, sorted, beside the missing ones
		{"unknown", map[string]string{"chanel_id": "C1", "zz": "1"}, nil, []string{"channel_id"}, []string{"chanel_id", "zz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.ResolveParams(tt.given)
			if tt.missing == nil && tt.unknown == nil {
				if err != nil || !maps.Equal(got, tt.want) {
					t.Fatalf("got %v, %v; want %v", got, err, tt.want)
				}
				return
			}
			var pe *ParamError
			if !errors.As(err, &pe) || strings.Join(pe.Missing, ",") != strings.Join(tt.missing, ",") || strings.Join(pe.Unknown, ",") != strings.Join(tt.unknown, ",") {
				t.Fatalf("err = %v", err)
			}
			msg := err.Error()
			for _, w := range append(append([]string{"channel_id (required): where", `emoji (default "fish")`}, tt.missing...), tt.unknown...) {
				if !strings.Contains(msg, w) {
					t.Errorf("%q not in %q", w, msg)
				}
			}
		})
	}
}

// A formation without a "params" field takes any parameters, as before
// parameters were declared; an empty list declares none.
func TestParamsUndeclared(t *testing.T) {
	f, diags := Parse(behaviors.File{Name: "f.json", Data: []byte(`{"name": "p", "begin_within_secs": 1, "percent": 50, ` + paramsSeq + `}`)})
	if f == nil {
		t.Fatal(diags)
	}
	if got, err := f.ResolveParams(map[string]string{"x": "1"}); err != nil || got["x"] != "1" {
		t.Fatalf("undeclared: %v %v", got, err)
	}
	f, diags = parseParamsFormation(t, `[]`)
	if f == nil {
		t.Fatal(diags)
	}
	if _, err := f.ResolveParams(map[string]string{"x": "1"}); err == nil || !strings.Contains(err.Error(), "declares no parameters") {
		t.Fatalf("declared none: %v", err)
	}
}

func TestBadParams(t *testing.T) {
	long := strings.Repeat("x", MaxParamValue+1)
	tests := []struct{ name, params, want string }{
		// every error is positioned at the params field (line 2) with the element's path
		{"not a list", `{"channel_id": true}`, `f.json:2:12: params: must be a list`},
		{"not an object", `["channel_id"]`, `f.json:2:12: params[0]: must be an object`},
		{"no name", `[{"required": true}]`, `params[0].name: missing or not a string`},
		{"bad name", `[{"name": "a b"}]`, `params[0].name: "a b" is not a parameter name`},
		{"twice", `[{"name": "a"}, {"name": "a"}]`, `params[1].name: "a" is declared twice`},
		{"required not bool", `[{"name": "a", "required": "yes"}]`, `params[0].required: must be true or false`},
		{"default not string", `[{"name": "a", "default": 3}]`, `params[0].default: must be a string`},
		{"default too long", `[{"name": "a", "default": "` + long + `"}]`, `params[0].default: 4097 bytes; at most 4096`},
		{"required with default", `[{"name": "a", "required": true, "default": "x"}]`, `params[0].default: a required parameter has no default`},
		{"doc not string", `[{"name": "a", "doc": 1}]`, `params[0].doc: must be a string`},
		{"unknown field", `[{"name": "a", "requird": true}]`, `params[0].requird: unknown field "requird"`},
		{"too many", `[` + strings.Repeat(`{"name": "a"},`, MaxParams) + `{"name": "b"}]`, `params: 33 parameters; at most 32`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, diags := parseParamsFormation(t, tt.params)
			if f != nil {
				t.Fatal("bad params loaded")
			}
			if !strings.Contains(diags.Error(), tt.want) {
				t.Errorf("%q not in:\n%s", tt.want, diags.Error())
			}
		})
	}
}
