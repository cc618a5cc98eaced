package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/keeper/contract"
	"github.com/koipond/koipond/keeper/notify"
	"github.com/koipond/koipond/keeper/state"
	"github.com/koipond/koipond/keeper/verdict"
)

// fill sets every field reachable from v to a value that is not zero: a
// string, a number, true, a time, one element in each slice (a JSON
// object in a json.RawMessage), one entry
// in each map, and a pointer to a filled value, so that every omitempty
// field shows.
func fill(v reflect.Value, depth int) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("s-" + v.Type().Name())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(9)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1.5)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		if depth > 6 {
			return
		}
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), depth+1)
		v.Set(p)
	case reflect.Slice:
		if v.Type() == reflect.TypeFor[json.RawMessage]() {
			v.SetBytes([]byte(`{"raw":1}`))
			return
		}
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0), depth+1)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, depth+1)
		fill(e, depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2026, 12, 3, 13, 0, 0, 123, time.UTC)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), depth)
			}
		}
	}
}

func filled[T any]() *T {
	var v T
	fill(reflect.ValueOf(&v).Elem(), 0)
	return &v
}

// sameJSON fails unless stored and view encode to the same bytes.
func sameJSON(t *testing.T, what string, stored, view any) {
	t.Helper()
	a, err := json.Marshal(stored)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(view)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("%s: the contract's JSON differs from the keeper's\nkeeper:   %s\ncontract: %s", what, a, b)
	}
}

// Every field of every converted type set (so omitempty fields show),
// and every one zero or nil: the contract's JSON is the keeper's, byte
// for byte, key order included.
func TestContractViewsEncodeLikeTheKeeper(t *testing.T) {
	run, rv := filled[state.Run](), filled[keeper.RunView]()
	rep := filled[state.Report]()
	rep.Snapshot = nil // never sent
	sv, sw, st := filled[keeper.SchoolView](), filled[keeper.SwitchView](), filled[keeper.Status]()
	sameJSON(t, "Run", run, runOut(run))
	sameJSON(t, "RunView", rv, runViewOut(rv))
	sameJSON(t, "Launch", filled[state.Launch](), launchOut(filled[state.Launch]()))
	sameJSON(t, "Report", rep, reportOut(rep))
	sameJSON(t, "SchoolView", []keeper.SchoolView{*sv}, schoolViewsOut([]keeper.SchoolView{*sv}))
	sameJSON(t, "SwitchView", sw, switchViewOut(*sw))
	sameJSON(t, "Status", st, statusOut(st))
	wv, tv, tr := filled[keeper.WebhookView](), filled[keeper.TriggerView](), filled[keeper.TriggerResult]()
	sameJSON(t, "WebhookView", wv, webhookViewOut(*wv))
	sameJSON(t, "TriggerView", tv, triggerViewOut(*tv))
	sameJSON(t, "TriggerResult", tr, triggerResultOut(tr))
	da := filled[notify.DeliveryAttempt]()
	sameJSON(t, "DeliveryAttempt", da, deliveryOut(*da))
	bs, fm, au := filled[state.BehaviorSet](), filled[state.Formation](), filled[state.AuditEntry]()
	sameJSON(t, "BehaviorSet", bs, behaviorSetOut(bs))
	sameJSON(t, "Formation", fm, formationOut(fm))
	sameJSON(t, "AuditEntry", au, auditOut(au))
	gv, ms, cmp := filled[keeper.GuardrailsView](), filled[keeper.MetricsSummary](), filled[verdict.Comparison]()
	sameJSON(t, "GuardrailsView", gv, guardrailsViewOut(gv))
	sameJSON(t, "MetricsSummary", ms, metricsOut(ms))
	sameJSON(t, "Comparison", cmp, comparisonOut(cmp))
	type storedCompared struct {
		*state.Report
		Comparison *verdict.Comparison `json:"comparison"`
	}
	sameJSON(t, "ComparedReport", storedCompared{rep, cmp}, ComparedReport{reportOut(rep), comparisonOut(cmp)})
	type storedLaunchView struct {
		*state.Launch
		Metrics *keeper.MetricsSummary `json:"metrics,omitempty"`
	}
	l := filled[state.Launch]()
	sameJSON(t, "LaunchView", storedLaunchView{l, ms}, LaunchView{launchOut(l), metricsOut(ms)})

	zr, zrv := &state.Run{}, &keeper.RunView{Run: &state.Run{}}
	sameJSON(t, "zero Run", zr, runOut(zr))
	sameJSON(t, "zero RunView", zrv, runViewOut(zrv))
	sameJSON(t, "zero Launch", &state.Launch{}, launchOut(&state.Launch{}))
	sameJSON(t, "zero Report", &state.Report{}, reportOut(&state.Report{}))
	sameJSON(t, "zero Status", &keeper.Status{}, statusOut(&keeper.Status{}))
	empty := &keeper.Status{Runs: []*keeper.RunView{}, Schools: []keeper.SchoolView{}, Launches: []*state.Launch{}}
	sameJSON(t, "empty Status", empty, statusOut(empty))
	sameJSON(t, "nil RunView", (*keeper.RunView)(nil), runViewOut(nil))
	sameJSON(t, "zero GuardrailsView", &keeper.GuardrailsView{}, guardrailsViewOut(&keeper.GuardrailsView{}))
	sameJSON(t, "zero MetricsSummary", &keeper.MetricsSummary{}, metricsOut(&keeper.MetricsSummary{}))
	sameJSON(t, "zero WebhookView", keeper.WebhookView{}, webhookViewOut(keeper.WebhookView{}))
	sameJSON(t, "zero TriggerView", keeper.TriggerView{}, triggerViewOut(keeper.TriggerView{}))
	sameJSON(t, "zero TriggerResult", &keeper.TriggerResult{}, triggerResultOut(&keeper.TriggerResult{}))
	sameJSON(t, "zero Comparison", &verdict.Comparison{}, comparisonOut(&verdict.Comparison{}))
}

// requestRoundTrip fails unless every field of the keeper's request type
// K (filled) decodes, unknown fields refused, into the contract's C and
// comes back through in with the same JSON: a field the keeper core
// takes but the contract lacks, or one the edge does not copy, fails it.
func requestRoundTrip[K, C any](t *testing.T, what string, in func(C) K) {
	t.Helper()
	want := filled[K]()
	data, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c C
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("%s: the contract does not take the keeper's fields: %v", what, err)
	}
	sameJSON(t, what, want, in(c))
}

// The keeper core's requests and the contract's carry the same fields.
func TestContractRequestsCarryEveryField(t *testing.T) {
	requestRoundTrip(t, "RunSpec", RunSpecIn)
	requestRoundTrip(t, "RunPatch", func(p contract.RunPatch) keeper.RunPatch { return keeper.RunPatch(p) })
	requestRoundTrip(t, "WebhookSpec", func(s contract.WebhookSpec) keeper.WebhookSpec { return keeper.WebhookSpec(s) })
	requestRoundTrip(t, "TriggerSpec", triggerSpecIn)
	requestRoundTrip(t, "LaunchSpec", func(s contract.LaunchSpec) keeper.LaunchSpec { return keeper.LaunchSpec(s) })
	requestRoundTrip(t, "GuardrailRule list", func(rs []contract.GuardrailRule) []state.GuardrailRule { return rulesIn(rs) })
}
