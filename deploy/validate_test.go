package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/koipond/koipond/keeper"
	"github.com/koipond/koipond/school"
	"github.com/nats-io/nats-server/v2/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"
)

// Measured figures the school's resources are sized from (deploy/README.md):
// an idle koi costs about 12 KiB of heap and stacks; a school process
// starts at a few tens of MiB.
const (
	koiBytes       = 12 << 10
	schoolBaseline = 64 << 20
)

// overlay is one kustomize overlay and what the test expects of it.
type overlay struct {
	name      string
	namespace string
	// external lists Secrets the overlay expects to exist in the cluster
	// (created out of band, documented in deploy/README.md).
	external []string
}

var overlays = []overlay{
	{name: "dev", namespace: "koipond-dev"},
	{name: "production", namespace: "koipond", external: []string{"koipond-nats", "koipond-keeper-key", "koipond-keeper-tokens"}},
}

// kinds maps every kind the manifests may contain to its apiVersion and
// official Go type. A kind not listed fails the test: add its type here.
var kinds = map[string]struct {
	apiVersion string
	new        func() any
}{
	"Namespace":           {"v1", func() any { return &corev1.Namespace{} }},
	"ConfigMap":           {"v1", func() any { return &corev1.ConfigMap{} }},
	"Secret":              {"v1", func() any { return &corev1.Secret{} }},
	"Service":             {"v1", func() any { return &corev1.Service{} }},
	"Deployment":          {"apps/v1", func() any { return &appsv1.Deployment{} }},
	"StatefulSet":         {"apps/v1", func() any { return &appsv1.StatefulSet{} }},
	"PodDisruptionBudget": {"policy/v1", func() any { return &policyv1.PodDisruptionBudget{} }},
	"NetworkPolicy":       {"networking.k8s.io/v1", func() any { return &networkingv1.NetworkPolicy{} }},
}

// built is one overlay after `kustomize build`, decoded.
type built struct {
	overlay
	objects      []any
	deployments  map[string]*appsv1.Deployment
	statefulsets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	configmaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	pdbs         []*policyv1.PodDisruptionBudget
	netpols      []*networkingv1.NetworkPolicy
}

// decodeStrict decodes one YAML document into the official type of its
// kind; unknown or duplicate fields are errors.
func decodeStrict(doc []byte) (any, error) {
	var head metav1.TypeMeta
	if err := sigsyaml.Unmarshal(doc, &head); err != nil {
		return nil, err
	}
	k, ok := kinds[head.Kind]
	if !ok {
		return nil, fmt.Errorf("kind %q is not one the test knows (add it to kinds)", head.Kind)
	}
	if head.APIVersion != k.apiVersion {
		return nil, fmt.Errorf("%s: apiVersion %q, want %q", head.Kind, head.APIVersion, k.apiVersion)
	}
	obj := k.new()
	if err := sigsyaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", head.Kind, err)
	}
	return obj, nil
}

var (
	buildMu    sync.Mutex
	buildCache = map[string]*built{}
)

// build runs kustomize (krusty, in-process) on an overlay and decodes
// every document strictly.
func build(t *testing.T, o overlay) *built {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if b := buildCache[o.name]; b != nil {
		return b
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("kubernetes", "overlays", o.name))
	if err != nil {
		t.Fatalf("kustomize build overlays/%s: %v", o.name, err)
	}
	b := &built{overlay: o, deployments: map[string]*appsv1.Deployment{}, statefulsets: map[string]*appsv1.StatefulSet{},
		services: map[string]*corev1.Service{}, configmaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, r := range m.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatalf("overlays/%s: %s/%s: %v", o.name, r.GetKind(), r.GetName(), err)
		}
		obj, err := decodeStrict(doc)
		if err != nil {
			t.Errorf("overlays/%s: %s/%s does not decode strictly: %v", o.name, r.GetKind(), r.GetName(), err)
			continue
		}
		b.objects = append(b.objects, obj)
		switch v := obj.(type) {
		case *appsv1.Deployment:
			b.deployments[v.Name] = v
		case *appsv1.StatefulSet:
			b.statefulsets[v.Name] = v
		case *corev1.Service:
			b.services[v.Name] = v
		case *corev1.ConfigMap:
			b.configmaps[v.Name] = v
		case *corev1.Secret:
			b.secrets[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			b.pdbs = append(b.pdbs, v)
		case *networkingv1.NetworkPolicy:
			b.netpols = append(b.netpols, v)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	buildCache[o.name] = b
	return b
}

// forEachOverlay runs f on every overlay as a subtest.
func forEachOverlay(t *testing.T, f func(t *testing.T, b *built)) {
	for _, o := range overlays {
		t.Run(o.name, func(t *testing.T) { f(t, build(t, o)) })
	}
}

// podSpecs returns every pod template in the build, by workload name.
func (b *built) podSpecs() map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for n, d := range b.deployments {
		out["Deployment/"+n] = &d.Spec.Template
	}
	for n, s := range b.statefulsets {
		out["StatefulSet/"+n] = &s.Spec.Template
	}
	return out
}

// koipondContainers returns the containers running the koipond image, by
// workload, with their role (the subcommand).
func (b *built) koipondContainers() map[string]*corev1.Container {
	out := map[string]*corev1.Container{}
	for w, p := range b.podSpecs() {
		for i := range p.Spec.Containers {
			c := &p.Spec.Containers[i]
			if imageName(c.Image) == "koipond" {
				out[w+"/"+c.Name] = c
			}
		}
	}
	return out
}

// imageName is the repository part of an image reference.
func imageName(ref string) string {
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// Every overlay builds and every document decodes strictly into the
// official types; every namespaced object lands in the overlay's namespace.
func TestManifestsDecodeStrictly(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, b *built) {
		counts := map[string]int{}
		for _, obj := range b.objects {
			m := metaOf(obj)
			kind := fmt.Sprintf("%T", obj)
			kind = kind[strings.LastIndex(kind, ".")+1:]
			counts[kind]++
			if _, ns := obj.(*corev1.Namespace); ns {
				if m.GetName() != b.namespace {
					t.Errorf("Namespace %q, want %q", m.GetName(), b.namespace)
				}
				continue
			}
			if m.GetNamespace() != b.namespace {
				t.Errorf("%s/%s in namespace %q, want %q", kind, m.GetName(), m.GetNamespace(), b.namespace)
			}
		}
		t.Logf("%d objects: %v", len(b.objects), counts)
	})
}

func metaOf(obj any) metav1.Object {
	m, ok := obj.(metav1.Object)
	if !ok {
		panic(fmt.Sprintf("%T has no metadata", obj))
	}
	return m
}

// Strict decoding is not vacuous: each row is a mistake it must catch.
func TestDecodeStrictCatchesMistakes(t *testing.T) {
	for _, tc := range []struct{ name, doc string }{
		// a misspelt field (terminationGracePeriod instead of …Seconds)
		{"unknown field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      terminationGracePeriod: 15\n"},
		// a field at the wrong level
		{"misplaced field", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nports: []\n"},
		// a field given twice
		{"duplicate field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n"},
		// the wrong type for a field
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: many}\n"},
		// an old apiVersion for the kind
		{"old apiVersion", "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: x}\n"},
		// a kind the test has no type for
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n"},
	} {
		if _, err := decodeStrict([]byte(tc.doc)); err == nil {
			t.Errorf("%s: decoded without error", tc.name)
		}
	}
	if _, err := decodeStrict([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n")); err != nil {
		t.Errorf("a valid ConfigMap: %v", err)
	}
}

// One image for every role, named without a registry host, pinned to a
// tag; NATS from its own image.
func TestImages(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, b *built) {
		var koipond []string
		for w, p := range b.podSpecs() {
			for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
				ref := c.Image
				if first, _, ok := strings.Cut(ref, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
					t.Errorf("%s/%s: image %q names a registry host; set it at deploy time (kustomize edit set image)", w, c.Name, ref)
				}
				tag := strings.TrimPrefix(ref, imageName(ref))
				if tag == "" || tag == ":latest" {
					t.Errorf("%s/%s: image %q is not pinned to a tag", w, c.Name, ref)
				}
				if imageName(ref) == "koipond" {
					koipond = append(koipond, ref)
				}
			}
		}
		slices.Sort(koipond)
		if koipond = slices.Compact(koipond); len(koipond) != 1 {
			t.Errorf("koipond containers use %d images %v, want one for every role", len(koipond), koipond)
		}
	})
}

// Every ConfigMap and Secret a pod refers to is in the build, or, for
// Secrets created out of band, listed in the overlay and in the README.
func TestReferencesResolve(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	forEachOverlay(t, func(t *testing.T, b *built) {
		for _, name := range b.external {
			if !bytes.Contains(readme, []byte(name)) {
				t.Errorf("secret %s is created out of band but deploy/README.md does not say how", name)
			}
		}
		checkSecret := func(where, name string) {
			if b.secrets[name] == nil && !slices.Contains(b.external, name) {
				t.Errorf("%s: Secret %q is neither in the build nor an expected external secret", where, name)
			}
		}
		checkConfigMap := func(where, name string) {
			if b.configmaps[name] == nil {
				t.Errorf("%s: ConfigMap %q is not in the build", where, name)
			}
		}
		for w, p := range b.podSpecs() {
			for _, v := range p.Spec.Volumes {
				if v.Secret != nil {
					checkSecret(w, v.Secret.SecretName)
				}
				if v.ConfigMap != nil {
					checkConfigMap(w, v.ConfigMap.Name)
				}
			}
			for _, c := range p.Spec.Containers {
				for _, e := range c.Env {
					if e.ValueFrom == nil {
						continue
					}
					if r := e.ValueFrom.SecretKeyRef; r != nil {
						checkSecret(w+"/"+c.Name, r.Name)
						if s := b.secrets[r.Name]; s != nil {
							if _, ok := s.Data[r.Key]; !ok {
								t.Errorf("%s/%s: Secret %s has no key %q", w, c.Name, r.Name, r.Key)
							}
						}
					}
					if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
						checkConfigMap(w+"/"+c.Name, r.Name)
						if cm := b.configmaps[r.Name]; cm != nil {
							if _, ok := cm.Data[r.Key]; !ok {
								t.Errorf("%s/%s: ConfigMap %s has no key %q", w, c.Name, r.Name, r.Key)
							}
						}
					}
				}
			}
		}
		// A tokens file in the build must be one the keeper accepts.
		if s := b.secrets["koipond-keeper-tokens"]; s != nil {
			if _, err := keeper.ParseTokens("koipond-keeper-tokens", s.Data["tokens"]); err != nil {
				t.Errorf("koipond-keeper-tokens: %v", err)
			}
		}
	})
}

// The school Deployment keeps the promises of deploy/README.md.
func TestSchoolInvariants(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, b *built) {
		d := b.deployments["school"]
		if d == nil {
			t.Fatal("no school Deployment")
		}
		p := d.Spec.Template.Spec
		if g := p.TerminationGracePeriodSeconds; g == nil || *g < 10 {
			t.Errorf("terminationGracePeriodSeconds = %v, want ≥ 10 (a school needs 5 s to close its koi's websockets)", g)
		}
		if len(p.TopologySpreadConstraints) == 0 && p.Affinity == nil {
			t.Error("schools are not spread across nodes")
		}
		if len(p.Containers) != 1 {
			t.Fatalf("%d containers, want 1", len(p.Containers))
		}
		c := p.Containers[0]
		args := expandArgs(t, b, &c)
		capacity := school.DefaultCapacity
		if v, ok := flagValue(args, "capacity"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("--capacity %q: %v", v, err)
			}
			capacity = n
		}
		req, lim := c.Resources.Requests, c.Resources.Limits
		need := func(name string, q resource.Quantity, min int64) {
			if q.IsZero() {
				t.Errorf("resources.%s is not set", name)
			} else if q.Value() < min {
				t.Errorf("resources.%s = %s, want ≥ %s", name, q.String(), resource.NewQuantity(min, resource.BinarySI))
			}
		}
		// Requests: the measured idle cost, rounded up to the 256 Mi the
		// README promises; the limit leaves twice the idle cost per koi
		// for busy koi and bursts.
		need("requests.memory", req[corev1.ResourceMemory], max(256<<20, schoolBaseline+int64(capacity)*koiBytes))
		need("limits.memory", lim[corev1.ResourceMemory], max(512<<20, schoolBaseline+2*int64(capacity)*koiBytes))
		if cpu := req[corev1.ResourceCPU]; cpu.MilliValue() < 500 {
			t.Errorf("resources.requests.cpu = %s, want ≥ 500m", cpu.String())
		}
		if _, ok := lim[corev1.ResourceCPU]; ok {
			t.Error("resources.limits.cpu is set: CPU throttling distorts koi timings (README: no CPU limit)")
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/healthz" {
			t.Error("no readiness probe on /healthz")
		}
		if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path == "/healthz" {
			t.Error("liveness on /healthz would restart a school that paused itself (and drop its koi)")
		}
		checkHardened(t, "school", &d.Spec.Template)
		if v, ok := flagValue(args, "http"); !ok || !strings.HasSuffix(v, ":9100") {
			t.Errorf("--http = %q, want the metrics port 9100 the probes and NetworkPolicy use", v)
		}
		if v, _ := flagValue(args, "nats"); !b.serviceURL(v, 4222) {
			t.Errorf("--nats %q is not a Service of the build on port 4222", v)
		}
	})
}

// checkHardened: non-root, no privilege escalation, read-only root, no
// capabilities.
func checkHardened(t *testing.T, name string, tpl *corev1.PodTemplateSpec) {
	t.Helper()
	ps := tpl.Spec.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
		t.Errorf("%s: pod does not require runAsNonRoot", name)
	}
	for _, c := range tpl.Spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s/%s: want allowPrivilegeEscalation false, readOnlyRootFilesystem true, capabilities drop ALL", name, c.Name)
		}
	}
}

// serviceURL reports whether raw (a URL) names a Service of the build
// exposing port.
func (b *built) serviceURL(raw string, port int32) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	s := b.services[strings.Split(u.Hostname(), ".")[0]]
	if s == nil {
		return false
	}
	p := u.Port()
	for _, sp := range s.Spec.Ports {
		if sp.Port == port && (p == "" || p == strconv.Itoa(int(port))) {
			return true
		}
	}
	return false
}

// The keeper is one replica replaced with Recreate; its KV replicas equal
// the NATS cluster's size.
func TestKeeperInvariants(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, b *built) {
		d := b.deployments["keeper"]
		if d == nil {
			t.Fatal("no keeper Deployment")
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			t.Errorf("keeper replicas = %v, want 1 (the single source of truth)", d.Spec.Replicas)
		}
		if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("keeper strategy %q, want Recreate (never two keepers at once)", d.Spec.Strategy.Type)
		}
		c := d.Spec.Template.Spec.Containers[0]
		args := expandArgs(t, b, &c)
		n := b.statefulsets["nats"]
		if n == nil {
			t.Fatal("no nats StatefulSet")
		}
		if v, _ := flagValue(args, "replicas"); v != strconv.Itoa(int(*n.Spec.Replicas)) {
			t.Errorf("keeper --replicas %q, want the NATS cluster size %d", v, *n.Spec.Replicas)
		}
		if v, _ := flagValue(args, "nats"); !b.serviceURL(v, 4222) {
			t.Errorf("--nats %q is not a Service of the build on port 4222", v)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/healthz" {
			t.Error("no readiness probe on /healthz")
		}
		checkHardened(t, "keeper", &d.Spec.Template)
	})
}

// A PodDisruptionBudget covers the schools and the NATS cluster.
func TestDisruptionBudgets(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, b *built) {
		for _, w := range []struct {
			name string
			tpl  *corev1.PodTemplateSpec
		}{{"school", podTemplate(b, "Deployment/school")}, {"nats", podTemplate(b, "StatefulSet/nats")}} {
			if w.tpl == nil {
				t.Errorf("no %s workload", w.name)
				continue
			}
			var found bool
			for _, p := range b.pdbs {
				sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
				if err != nil {
					t.Errorf("PodDisruptionBudget %s: %v", p.Name, err)
					continue
				}
				if !sel.Empty() && sel.Matches(labels.Set(w.tpl.Labels)) {
					found = true
					if p.Spec.MaxUnavailable == nil && p.Spec.MinAvailable == nil {
						t.Errorf("PodDisruptionBudget %s sets neither maxUnavailable nor minAvailable", p.Name)
					}
				}
			}
			if !found {
				t.Errorf("no PodDisruptionBudget selects the %s pods", w.name)
			}
		}
	})
}

func podTemplate(b *built, key string) *corev1.PodTemplateSpec { return b.podSpecs()[key] }

// Schools reach only NATS, DNS and their allow-target list; every entry of
// the list is reachable; nothing else is.
func TestSchoolEgress(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, b *built) {
		tpl := podTemplate(b, "Deployment/school")
		nats := podTemplate(b, "StatefulSet/nats")
		if tpl == nil || nats == nil {
			t.Fatal("no school Deployment or nats StatefulSet")
		}
		schoolLabels := labels.Set(tpl.Labels)
		c := tpl.Spec.Containers[0]
		allowRaw, _ := flagValue(expandArgs(t, b, &c), "allow-target")
		allow := splitList(allowRaw)
		if _, err := school.ParseAllow(allow); err != nil {
			t.Fatalf("--allow-target %q: %v", allowRaw, err)
		}
		var egress int
		var targets []networkingv1.NetworkPolicyPeer
		for _, np := range b.netpols {
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil {
				t.Fatalf("NetworkPolicy %s: %v", np.Name, err)
			}
			if !sel.Matches(schoolLabels) {
				continue
			}
			if slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
				for _, r := range np.Spec.Ingress {
					for _, p := range r.Ports {
						if p.Port == nil || p.Port.IntValue() != 9100 {
							t.Errorf("NetworkPolicy %s lets schools accept port %v; only 9100 (metrics) is served", np.Name, p.Port)
						}
					}
					if len(r.Ports) == 0 {
						t.Errorf("NetworkPolicy %s lets schools accept every port", np.Name)
					}
				}
			}
			if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
				continue
			}
			egress++
			for i, r := range np.Spec.Egress {
				where := fmt.Sprintf("NetworkPolicy %s egress[%d]", np.Name, i)
				if len(r.To) == 0 {
					t.Errorf("%s has no 'to': it allows every destination", where)
				}
				for _, peer := range r.To {
					switch {
					case peerSelects(peer, nats.Labels, false):
						checkPorts(t, where+" (NATS)", r.Ports, 4222)
					case peer.NamespaceSelector != nil && peerSelects(peer, map[string]string{"k8s-app": "kube-dns"}, true):
						checkPorts(t, where+" (DNS)", r.Ports, 53)
					case peer.NamespaceSelector != nil:
						t.Errorf("%s reaches pods in other namespaces beyond DNS", where)
					case peer.IPBlock != nil:
						pre, err := netip.ParsePrefix(peer.IPBlock.CIDR)
						if err != nil {
							t.Errorf("%s: %v", where, err)
						} else if pre.Bits() == 0 {
							t.Errorf("%s allows %s: every address", where, pre)
						}
						if len(r.Ports) == 0 {
							t.Errorf("%s allows every port of %s", where, pre)
						}
						targets = append(targets, peer)
					case peer.PodSelector != nil:
						targets = append(targets, peer)
					}
				}
			}
		}
		if egress == 0 {
			t.Fatal("no NetworkPolicy restricts the schools' egress")
		}
		// Every target peer is in the allow list, and every entry of the
		// list has a peer.
		covered := make([]bool, len(targets))
		for _, a := range allow {
			if ok := b.allowCovered(a, targets, covered); !ok {
				t.Errorf("allow-target %q has no egress rule: schools could not reach it", a)
			}
		}
		for i, ok := range covered {
			if !ok {
				t.Errorf("egress to %+v is not in the allow-target list %q", targets[i], allowRaw)
			}
		}
	})
}

// peerSelects reports whether a peer's podSelector matches podLabels.
func peerSelects(p networkingv1.NetworkPolicyPeer, podLabels map[string]string, allowNS bool) bool {
	if p.PodSelector == nil || p.IPBlock != nil || (p.NamespaceSelector != nil && !allowNS) {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(p.PodSelector)
	return err == nil && !sel.Empty() && sel.Matches(labels.Set(podLabels))
}

func checkPorts(t *testing.T, where string, ports []networkingv1.NetworkPolicyPort, want int) {
	t.Helper()
	if len(ports) == 0 {
		t.Errorf("%s allows every port, want only %d", where, want)
	}
	for _, p := range ports {
		if p.Port == nil || p.Port.IntValue() != want {
			t.Errorf("%s allows port %v, want only %d", where, p.Port, want)
		}
	}
}

// allowCovered finds the egress peers that reach allow-target entry a: a
// CIDR or IP inside an ipBlock, or a name that is a Service of the build
// whose pods a podSelector peer selects. It marks them covered.
func (b *built) allowCovered(a string, peers []networkingv1.NetworkPolicyPeer, covered []bool) bool {
	host := a
	if h, _, err := netSplit(a); err == nil {
		host = h
	}
	var want netip.Prefix
	if p, err := netip.ParsePrefix(a); err == nil {
		want = p.Masked()
	} else if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		want = netip.PrefixFrom(ip, ip.BitLen())
	}
	found := false
	for i, p := range peers {
		switch {
		case want.IsValid() && p.IPBlock != nil:
			blk, err := netip.ParsePrefix(p.IPBlock.CIDR)
			if err == nil && blk.Bits() <= want.Bits() && blk.Contains(want.Addr()) {
				covered[i], found = true, true
			}
		case !want.IsValid() && p.PodSelector != nil:
			if svc := b.services[host]; svc != nil && peerSelects(p, svc.Spec.Selector, false) {
				covered[i], found = true, true
			}
		}
	}
	return found
}

// netSplit is net.SplitHostPort for "host:port" allow entries (a CIDR
// has no port).
func netSplit(s string) (string, string, error) {
	if strings.Contains(s, "/") {
		return "", "", errors.New("a CIDR")
	}
	i := strings.LastIndex(s, ":")
	if i < 0 || strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
		return "", "", errors.New("no port")
	}
	return s[:i], s[i+1:], nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// The NATS configuration parses with nats-server's own parser: JetStream
// on file storage, a route to every StatefulSet pod, a keeper and a school
// user with the permissions the keeper's embedded server gives them, and
// room for the keeper's 8 MB blobs.
func TestNATSConfig(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, b *built) {
		ss := b.statefulsets["nats"]
		if ss == nil {
			t.Fatal("no nats StatefulSet")
		}
		// The ConfigMap is generated (its name carries a content hash):
		// find it through the pod's volume.
		var cm *corev1.ConfigMap
		for _, v := range ss.Spec.Template.Spec.Volumes {
			if v.ConfigMap != nil && b.configmaps[v.ConfigMap.Name] != nil && b.configmaps[v.ConfigMap.Name].Data["nats.conf"] != "" {
				cm = b.configmaps[v.ConfigMap.Name]
			}
		}
		if cm == nil {
			t.Fatal("no ConfigMap with nats.conf mounted in the nats pods")
		}
		conf := filepath.Join(t.TempDir(), "nats.conf")
		if err := os.WriteFile(conf, []byte(cm.Data["nats.conf"]), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("POD_NAME", ss.Name+"-0")
		t.Setenv("KEEPER_PASSWORD", "keeper-password-for-the-test")
		t.Setenv("SCHOOL_PASSWORD", "school-password-for-the-test")
		opts, err := server.ProcessConfigFile(conf)
		if err != nil {
			t.Fatalf("nats.conf: %v", err)
		}
		if opts.ServerName != ss.Name+"-0" {
			t.Errorf("server_name %q, want the pod's name from $POD_NAME", opts.ServerName)
		}
		if !opts.JetStream || opts.StoreDir == "" {
			t.Error("JetStream with a store_dir is not configured")
		}
		checkNATSUsers(t, b, opts)
		if opts.MaxPayload < 8<<20 {
			t.Errorf("max_payload %d < 8 MiB: the keeper's behavior-set blobs would not fit", opts.MaxPayload)
		}
		replicas := int(*ss.Spec.Replicas)
		if replicas < 3 {
			t.Errorf("NATS replicas %d: JetStream needs 3 to survive a node", replicas)
		}
		var routes []string
		for _, r := range opts.Routes {
			routes = append(routes, r.Host)
		}
		for i := range replicas {
			want := fmt.Sprintf("%s-%d.%s:%d", ss.Name, i, ss.Spec.ServiceName, opts.Cluster.Port)
			if !slices.Contains(routes, want) {
				t.Errorf("no cluster route to %s (routes %v)", want, routes)
			}
		}
		if b.services[ss.Spec.ServiceName] == nil || b.services[ss.Spec.ServiceName].Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("serviceName %q is not a headless Service of the build", ss.Spec.ServiceName)
		}
		var mountsData bool
		for _, m := range ss.Spec.Template.Spec.Containers[0].VolumeMounts {
			mountsData = mountsData || (m.MountPath == opts.StoreDir && slices.ContainsFunc(ss.Spec.VolumeClaimTemplates,
				func(p corev1.PersistentVolumeClaim) bool { return p.Name == m.Name }))
		}
		if !mountsData {
			t.Errorf("the JetStream store %s is not on a persistent volume", opts.StoreDir)
		}
	})
}

// --- container args through the binary's own flag parser

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// koipondBinary builds cmd/koipond once per test binary.
func koipondBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "koipond-deploy-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "koipond")
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(gobin, "build", "-o", binPath, "./cmd/koipond")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/koipond: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandArgs expands $(VAR) in a container's args the way the kubelet
// does, from the container's env: literal values, ConfigMap and Secret
// keys of the build, and placeholders for external Secrets and fieldRefs.
func expandArgs(t *testing.T, b *built, c *corev1.Container) []string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			r := e.ValueFrom.ConfigMapKeyRef
			if cm := b.configmaps[r.Name]; cm != nil {
				if v, ok := cm.Data[r.Key]; ok {
					env[e.Name] = v
				}
			}
		case e.ValueFrom.SecretKeyRef != nil:
			r := e.ValueFrom.SecretKeyRef
			if s := b.secrets[r.Name]; s != nil {
				if v, ok := s.Data[r.Key]; ok {
					env[e.Name] = string(v)
				}
			} else {
				env[e.Name] = "external-secret-placeholder"
			}
		case e.ValueFrom.FieldRef != nil:
			env[e.Name] = "field-placeholder"
		}
	}
	out := make([]string, len(c.Args))
	for i, a := range c.Args {
		out[i] = envRef.ReplaceAllStringFunc(a, func(m string) string {
			name := envRef.FindStringSubmatch(m)[1]
			v, ok := env[name]
			if !ok {
				t.Errorf("container %s: arg %q refers to $(%s), which its env does not define", c.Name, a, name)
				return m
			}
			return v
		})
	}
	return out
}

// flagValue returns the value of --name (or -name) in args, given as
// --name=value or --name value.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		for _, p := range []string{"--" + name, "-" + name} {
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v, true
			}
			if a == p && i+1 < len(args) {
				return args[i+1], true
			}
		}
	}
	return "", false
}

// checkArgs feeds args (subcommand first) to the koipond binary with
// --help appended. Go's flag package parses left to right, so every flag
// before --help is parsed and its value set (an unknown flag or a bad
// value exits 2 before --help is reached); reaching --help prints the
// usage and exits 0. A positional argument would stop parsing: the
// command then either rejects it (exit 2) or starts, which the timeout
// catches. Then the role's Config.Validate checks the values that matter.
func checkArgs(bin string, args []string) error {
	if len(args) == 0 {
		return errors.New("no args: the container would run koipond without a subcommand")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(slices.Clone(args), "--help")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("koipond %s did not exit: a positional argument stopped flag parsing before --help", strings.Join(args, " "))
	}
	if err != nil {
		return fmt.Errorf("koipond %s --help: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	if help := out.String(); !strings.Contains(help, "Usage:") || !strings.Contains(help, "\n  koipond "+args[0]+" ") {
		return fmt.Errorf("koipond %s --help printed no usage of %q:\n%s", strings.Join(args, " "), args[0], out.String())
	}
	return validateRole(args)
}

// validateRole runs the role's own Config.Validate on the values the
// manifests set (the binary's --help exits before it would).
func validateRole(args []string) error {
	val := func(name string) string { v, _ := flagValue(args, name); return v }
	switch args[0] {
	case "school":
		cfg := school.Config{AllowTargets: splitList(val("allow-target"))}
		if v := val("capacity"); v != "" {
			cfg.Capacity, _ = strconv.Atoi(v)
		}
		return errors.Join(cfg.Validate()...)
	case "keeper":
		cfg := keeper.Config{HTTP: val("http"), NATS: val("nats"), TokensFile: val("tokens")}
		if v := val("replicas"); v != "" {
			cfg.Replicas, _ = strconv.Atoi(v)
		}
		return errors.Join(cfg.Validate()...)
	case "pond":
		if h := val("http"); h != "" && !strings.HasPrefix(h, "127.") && !slices.Contains(args, "--allow-remote") {
			return fmt.Errorf("pond --http %s beyond loopback needs --allow-remote", h)
		}
	}
	return nil
}

// Every koipond container's args are accepted by the binary's own flag
// parser and its role's Config.Validate.
func TestContainerArgs(t *testing.T) {
	bin := koipondBinary(t)
	forEachOverlay(t, func(t *testing.T, b *built) {
		roles := map[string]bool{}
		for w, c := range b.koipondContainers() {
			if len(c.Command) > 0 {
				t.Errorf("%s: command %v overrides the image's entrypoint; set args only", w, c.Command)
			}
			args := expandArgs(t, b, c)
			if err := checkArgs(bin, args); err != nil {
				t.Errorf("%s: %v", w, err)
				continue
			}
			roles[args[0]] = true
		}
		for _, r := range []string{"keeper", "school"} {
			if !roles[r] {
				t.Errorf("no %s container", r)
			}
		}
	})
}

// The args check is not vacuous: each row is a mistake it must catch.
func TestContainerArgsCatchMistakes(t *testing.T) {
	bin := koipondBinary(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"unknown flag", []string{"school", "--nats=nats://nats:4222", "--capacty=5000"}},
		{"bad value", []string{"school", "--capacity=lots"}},
		{"positional argument", []string{"keeper", "--http=0.0.0.0:8080", "nats://nats:4222"}},
		{"bad allow-target", []string{"school", "--allow-target=http://pond:9090/api"}},
		{"keeper beyond loopback without tokens", []string{"keeper", "--http=0.0.0.0:8080", "--nats=nats://nats:4222"}},
		{"pond beyond loopback", []string{"pond", "--http=0.0.0.0:9090"}},
		{"no subcommand", nil},
		{"unknown subcommand", []string{"schol", "--nats=nats://nats:4222"}},
	} {
		if err := checkArgs(bin, tc.args); err == nil {
			t.Errorf("%s: %q accepted", tc.name, tc.args)
		}
	}
	if err := checkArgs(bin, []string{"school", "--nats=nats://nats:4222", "--capacity=5000", "--allow-target=pond:9090"}); err != nil {
		t.Errorf("valid school args rejected: %v", err)
	}
}

// The Dockerfile (it cannot be built in `make test`: no container engine
// is assumed) keeps its promises: multi-stage, a static binary of
// ./cmd/koipond, a non-root final stage from scratch, no registry host.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var user, entry string
	var build bool
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
			user = "" // USER applies per stage
		case "USER":
			user = f[1]
		case "ENTRYPOINT":
			entry = strings.Join(f[1:], " ")
		}
		if strings.Contains(line, "CGO_ENABLED=0") {
			build = true
		}
	}
	if len(froms) < 2 {
		t.Errorf("%d stages, want a multi-stage build", len(froms))
	}
	for _, f := range froms {
		if first, _, ok := strings.Cut(f, "/"); ok && strings.ContainsAny(first, ".:") {
			t.Errorf("FROM %s names a registry host", f)
		}
	}
	if len(froms) > 0 && froms[len(froms)-1] != "scratch" {
		t.Errorf("final stage FROM %s, want scratch (static binary)", froms[len(froms)-1])
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("final stage USER %q, want a non-root uid", user)
	} else if n, err := strconv.Atoi(uid); err != nil || n != 65532 {
		t.Errorf("final stage USER %q, want 65532 (the manifests' runAsUser)", user)
	}
	if !build || !strings.Contains(string(b), "./cmd/koipond") {
		t.Error("no CGO_ENABLED=0 build of ./cmd/koipond")
	}
	if entry != `["/koipond"]` {
		t.Errorf("ENTRYPOINT %s, want [\"/koipond\"] (the manifests set args only)", entry)
	}
}

// checkNATSUsers: nats.conf has exactly a keeper user (every permission)
// and a school user with keeper.SchoolPermissions, their passwords from
// the environment, and the keeper and school containers log in as them
// with the matching key of Secret koipond-nats (a generated one carries a
// hash suffix) in KOIPOND_NATS_PASSWORD.
func checkNATSUsers(t *testing.T, b *built, opts *server.Options) {
	t.Helper()
	if opts.Authorization != "" || len(opts.Nkeys) != 0 {
		t.Error("nats.conf sets a token or nkeys besides the per-role users")
	}
	users := map[string]*server.User{}
	for _, u := range opts.Users {
		users[u.Username] = u
	}
	if len(users) != 2 || users["keeper"] == nil || users["school"] == nil {
		t.Fatalf("nats.conf users %v, want keeper and school", slices.Collect(maps.Keys(users)))
	}
	if users["keeper"].Password != "keeper-password-for-the-test" || users["school"].Password != "school-password-for-the-test" {
		t.Error("the passwords do not come from $KEEPER_PASSWORD and $SCHOOL_PASSWORD")
	}
	if users["keeper"].Permissions != nil {
		t.Errorf("the keeper user is restricted: %+v", users["keeper"].Permissions)
	}
	want := keeper.SchoolPermissions()
	got := users["school"].Permissions
	if got == nil || got.Publish == nil || got.Subscribe == nil || got.Response != nil ||
		!slices.Equal(got.Publish.Allow, want.Publish.Allow) || len(got.Publish.Deny) != 0 ||
		!slices.Equal(got.Subscribe.Allow, want.Subscribe.Allow) || len(got.Subscribe.Deny) != 0 {
		t.Errorf("school permissions %+v / %+v, want %+v / %+v (keeper.SchoolPermissions)", got.Publish, got.Subscribe, want.Publish, want.Subscribe)
	}
	for role, key := range map[string]string{"keeper": "keeper-password", "school": "school-password"} {
		found := false
		for w, c := range b.koipondContainers() {
			args := expandArgs(t, b, c)
			if len(args) == 0 || args[0] != role {
				continue
			}
			found = true
			if v, _ := flagValue(args, "nats-user"); v != role {
				t.Errorf("%s: --nats-user %q, want %q", w, v, role)
			}
			ok := slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
				return e.Name == "KOIPOND_NATS_PASSWORD" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
					strings.HasPrefix(e.ValueFrom.SecretKeyRef.Name, "koipond-nats") && e.ValueFrom.SecretKeyRef.Key == key
			})
			if !ok {
				t.Errorf("%s: KOIPOND_NATS_PASSWORD does not come from Secret koipond-nats key %s", w, key)
			}
		}
		if !found {
			t.Errorf("no %s container", role)
		}
	}
}
