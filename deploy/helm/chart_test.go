// Package helm_test checks the chart deploy/helm/dwell: helm lint and helm template (Helm v4,
// pinned, built from its Go module by make helm), and every rendered manifest decoded
// strictly (unknown fields fail) into the Kubernetes API types, for the default values and
// the value sets in testdata/. k8s.io/api is a dependency of this test only, never of the
// dwell binary.
package helm_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// HelmVersion is the Helm the Makefile builds (make helm) and CI runs.
const HelmVersion = "v4.3.2"

const chart = "dwell"

// helmBin finds Helm: $DWELL_HELM, else make helm's cache, else a helm v4 on PATH.
func helmBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("DWELL_HELM"); p != "" {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "dwell", "helm-"+HelmVersion, "helm")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("helm"); err == nil {
		if out, err := exec.Command(p, "version", "--short").Output(); err == nil && strings.HasPrefix(string(out), "v4.") {
			return p
		}
	}
	t.Skip("SKIPPED: Helm " + HelmVersion + " is not built (make helm builds it into ~/.cache/dwell); the chart was not rendered")
	return ""
}

func helm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out, nil
}

// valueSets are the value files the chart is rendered with: none (the defaults) and each of
// testdata/*.yaml.
func valueSets(t *testing.T) map[string][]string {
	sets := map[string][]string{"defaults": nil}
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		sets[strings.TrimSuffix(filepath.Base(f), ".yaml")] = []string{"-f", f}
	}
	return sets
}

type manifest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

// decodeStrict decodes doc into the API type of its kind; an unknown field or kind fails.
func decodeStrict(doc []byte) (any, manifest, error) {
	var m manifest
	if err := yaml.Unmarshal(doc, &m); err != nil {
		return nil, m, err
	}
	var obj any
	switch m.APIVersion + " " + m.Kind {
	case "apps/v1 StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1 Secret":
		obj = &corev1.Secret{}
	case "v1 ServiceAccount":
		obj = &corev1.ServiceAccount{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "networking.k8s.io/v1 Ingress":
		obj = &networkingv1.Ingress{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		obj = &autoscalingv2.HorizontalPodAutoscaler{}
	case "monitoring.coreos.com/v1 ServiceMonitor":
		obj = &monitoringv1.ServiceMonitor{}
	case "monitoring.coreos.com/v1 PrometheusRule":
		obj = &monitoringv1.PrometheusRule{}
	default:
		return nil, m, fmt.Errorf("%s %s: a kind this test does not know; add its API type", m.APIVersion, m.Kind)
	}
	// As the API server decodes: field names case-sensitive (encoding/json would take
	// clusterIp for clusterIP), duplicates and unknown fields errors.
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, m, err
	}
	strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err == nil {
		err = errors.Join(strict...)
	}
	return obj, m, err
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// render runs helm template with args and decodes every manifest strictly.
func render(t *testing.T, args ...string) map[string]any {
	t.Helper()
	out, err := helm(t, append([]string{"template", "rel", chart}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]any{}
	for _, doc := range docSep.Split(string(out), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^#.*$`).ReplaceAllString(doc, "")) == "" {
			continue
		}
		obj, m, err := decodeStrict([]byte(doc))
		if err != nil {
			t.Errorf("%s %s: %v\n%s", m.Kind, m.Metadata.Name, err, doc)
			continue
		}
		objs[m.Kind+"/"+m.Metadata.Name] = obj
	}
	return objs
}

func TestChartLint(t *testing.T) {
	for name, args := range valueSets(t) {
		if out, err := helm(t, append([]string{"lint", "--strict", chart}, args...)...); err != nil {
			t.Errorf("%s: %v", name, err)
		} else if !bytes.Contains(out, []byte("0 chart(s) failed")) {
			t.Errorf("%s: %s", name, out)
		}
	}
}

// TestChartRenders decodes every manifest of every value set strictly and checks what the
// issue asks of the StatefulSet.
func TestChartRenders(t *testing.T) {
	for name, args := range valueSets(t) {
		t.Run(name, func(t *testing.T) {
			objs := render(t, args...)
			sts, ok := objs["StatefulSet/rel-dwell"].(*appsv1.StatefulSet)
			if !ok {
				t.Fatalf("no StatefulSet rel-dwell among %d objects", len(objs))
			}
			spec := sts.Spec.Template.Spec
			if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
				t.Errorf("podManagementPolicy %q", sts.Spec.PodManagementPolicy)
			}
			c := spec.Containers[0]
			txn := 0
			for _, a := range c.Args {
				if v, ok := strings.CutPrefix(a, "--transaction-timeout="); ok {
					fmt.Sscanf(v, "%ds", &txn)
				}
			}
			if txn == 0 || spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds <= int64(txn) {
				t.Errorf("termination grace %v not longer than the transaction timeout %ds", spec.TerminationGracePeriodSeconds, txn)
			}
			if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Error("probes: want /readyz for readiness and /healthz for liveness")
			}
			if c.Resources.Limits.Memory().IsZero() {
				t.Error("no memory limit")
			}
			if _, ok := objs["Service/rel-dwell-headless"].(*corev1.Service); !ok || sts.Spec.ServiceName != "rel-dwell-headless" {
				t.Error("no headless Service for the StatefulSet")
			}
			pvc := len(sts.Spec.VolumeClaimTemplates) == 1
			emptyDir := false
			for _, v := range spec.Volumes {
				if v.Name == "data" && v.EmptyDir != nil {
					emptyDir = true
				}
			}
			if pvc == emptyDir {
				t.Errorf("data volume: a claim template %t, an emptyDir %t; want exactly one", pvc, emptyDir)
			}
			if name == "defaults" {
				if !pvc {
					t.Error("defaults: the data dir is not on a PersistentVolumeClaim")
				}
				if _, ok := objs["PodDisruptionBudget/rel-dwell"]; !ok {
					t.Error("defaults: no PodDisruptionBudget")
				}
				if _, ok := objs["Deployment/rel-dwell-collect"]; ok {
					t.Error("defaults: the dwell collect Deployment is on; it is opt-in (collect.enabled)")
				}
			}
		})
	}
}

// TestChartCollect renders testdata/collect.yaml (sources in the chart's ConfigMap, an API key
// from a Secret, an Ingress with TLS) and everything.yaml (the user's ConfigMap, envFrom, the
// autoscaler) and checks the dwell collect objects: the flags, the sources file's mount and
// content, probes on the listen port, the grace period against --drain-timeout, the Service,
// the metrics Service the ServiceMonitor scrapes as job dwell-collect, the Ingress, the PDB.
func TestChartCollect(t *testing.T) {
	for _, tc := range []struct {
		values, topic, configMap string
		ingress, hpa             bool
	}{
		{"collect", "web-events", "rel-dwell-collect", true, false},
		{"everything", "events", "shop-sources", false, true},
	} {
		t.Run(tc.values, func(t *testing.T) {
			objs := render(t, "-f", "testdata/"+tc.values+".yaml")
			d, ok := objs["Deployment/rel-dwell-collect"].(*appsv1.Deployment)
			if !ok {
				t.Fatal("no Deployment rel-dwell-collect")
			}
			spec := d.Spec.Template.Spec
			c := spec.Containers[0]
			args := map[string]string{}
			for _, a := range c.Args {
				k, v, _ := strings.Cut(a, "=")
				args[k] = v
			}
			if c.Args[0] != "collect" {
				t.Errorf("args %q: want dwell collect", c.Args)
			}
			for flag, want := range map[string]string{
				"--brokers":      "",
				"--topic":        tc.topic,
				"--listen":       ":8686",
				"--metrics-addr": ":9091",
				"--sources":      "/etc/dwell/sources/sources.yaml",
			} {
				got, ok := args[flag]
				if !ok || (want != "" && got != want) || got == "" {
					t.Errorf("%s=%q (given: %t), want %q; args %q", flag, got, ok, want, c.Args)
				}
			}
			var drain, delay int
			fmt.Sscanf(args["--drain-timeout"], "%ds", &drain)
			fmt.Sscanf(args["--shutdown-delay"], "%ds", &delay)
			if drain == 0 || delay == 0 || spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds <= int64(drain+delay) {
				t.Errorf("termination grace %v not longer than --shutdown-delay=%q + --drain-timeout=%q", spec.TerminationGracePeriodSeconds, args["--shutdown-delay"], args["--drain-timeout"])
			}
			if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Port.String() != "http" ||
				c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.LivenessProbe.HTTPGet.Port.String() != "http" {
				t.Error("probes: want /readyz for readiness and /healthz for liveness, on the listen port")
			}
			ports := map[string]int32{}
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			if ports["http"] != 8686 || ports["metrics"] != 9091 {
				t.Errorf("container ports %v", ports)
			}
			if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem ||
				spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
				t.Error("securityContext: want the StatefulSet's (non-root, read-only root filesystem)")
			}
			mounted := false
			for _, m := range c.VolumeMounts {
				if m.Name == "sources" && m.MountPath == "/etc/dwell/sources" && m.SubPath == "" {
					mounted = true
				}
			}
			var cmName string
			for _, v := range spec.Volumes {
				if v.Name == "sources" && v.ConfigMap != nil {
					cmName = v.ConfigMap.Name
				}
			}
			if !mounted || cmName != tc.configMap {
				t.Errorf("sources: mounted at /etc/dwell/sources (not a subPath, which never updates): %t; ConfigMap %q, want %q", mounted, cmName, tc.configMap)
			}
			if _, ok := objs["ConfigMap/rel-dwell-collect"]; ok != (tc.configMap == "rel-dwell-collect") {
				t.Errorf("the chart's sources ConfigMap rendered: %t", ok)
			}
			if cm, ok := objs["ConfigMap/rel-dwell-collect"].(*corev1.ConfigMap); ok {
				var f struct {
					Sources []map[string]any `json:"sources"`
				}
				if err := yaml.UnmarshalStrict([]byte(cm.Data["sources.yaml"]), &f); err != nil {
					t.Fatalf("sources.yaml: %v\n%s", err, cm.Data["sources.yaml"])
				}
				if len(f.Sources) != 2 || f.Sources[0]["id"] != "web" || f.Sources[1]["api_key_env"] != "DWELL_SOURCE_BACKEND_KEY" {
					t.Errorf("sources.yaml holds %v, want the sources of collect.sources", f.Sources)
				}
				keyed := false
				for _, e := range c.Env {
					keyed = keyed || (e.Name == "DWELL_SOURCE_BACKEND_KEY" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil)
				}
				if !keyed {
					t.Error("the API key variable api_key_env names is not set from a Secret")
				}
			}
			if svc, ok := objs["Service/rel-dwell-collect"].(*corev1.Service); !ok || svc.Spec.Type != corev1.ServiceTypeClusterIP ||
				svc.Spec.Ports[0].Port != 80 || svc.Spec.Ports[0].TargetPort.String() != "http" {
				t.Error("no ClusterIP Service rel-dwell-collect, port 80 to the listen port")
			}
			if svc, ok := objs["Service/rel-dwell-collect-metrics"].(*corev1.Service); !ok || svc.Labels["dwell.dev/job"] != "dwell-collect" || svc.Spec.Ports[0].Name != "metrics" {
				t.Error("no metrics Service labelled dwell.dev/job=dwell-collect with a port named metrics (what the ServiceMonitor scrapes)")
			}
			if _, ok := objs["ServiceMonitor/rel-dwell"]; !ok {
				t.Error("no ServiceMonitor")
			}
			if _, ok := objs["PodDisruptionBudget/rel-dwell-collect"]; !ok {
				t.Error("no PodDisruptionBudget for dwell collect")
			}
			if _, ok := objs["HorizontalPodAutoscaler/rel-dwell-collect"]; ok != tc.hpa || (d.Spec.Replicas == nil) != tc.hpa {
				t.Errorf("HorizontalPodAutoscaler %t, replicas %v; want the autoscaler %t", ok, d.Spec.Replicas, tc.hpa)
			}
			ing, ok := objs["Ingress/rel-dwell-collect"].(*networkingv1.Ingress)
			if ok != tc.ingress {
				t.Fatalf("Ingress rendered: %t, want %t", ok, tc.ingress)
			}
			if ok {
				r := ing.Spec.Rules[0]
				var paths []string
				for _, p := range r.HTTP.Paths {
					paths = append(paths, p.Path)
					if p.Backend.Service == nil || p.Backend.Service.Name != "rel-dwell-collect" {
						t.Errorf("Ingress path %s: not to the Service rel-dwell-collect", p.Path)
					}
				}
				if r.Host != "collect.example.com" || strings.Join(paths, " ") != "/track /tracker.js" ||
					len(ing.Spec.TLS) != 1 || ing.Spec.TLS[0].SecretName != "collect-example-com-tls" {
					t.Errorf("Ingress: host %q, paths %q, tls %v", r.Host, paths, ing.Spec.TLS)
				}
			}
		})
	}
}

// TestChartCollectRefuses: dwell collect without sources would exit at start; a grace period
// not longer than --drain-timeout would kill it while it answers the requests in flight; with
// several inputs it cannot guess the topic.
func TestChartCollectRefuses(t *testing.T) {
	for args, want := range map[string]string{
		"collect.enabled=true": "collect.enabled needs event sources",
		"collect.enabled=true,collect.existingSourcesConfigMap=s,collect.terminationGracePeriodSeconds=30": "must be longer than collect.shutdownDelaySeconds + collect.drainTimeoutSeconds",
		"collect.enabled=true,collect.existingSourcesConfigMap=s,inputs=a\\,b":                             "set collect.topic",
	} {
		if _, err := helm(t, "template", "rel", chart, "--set", args); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--set %s: %v, want an error saying %q", args, err, want)
		}
	}
}

// TestChartRefusesShortGrace: a termination grace period not longer than the transaction
// timeout would kill dwell in the middle of its last cycle.
func TestChartRefusesShortGrace(t *testing.T) {
	_, err := helm(t, "template", "rel", chart, "--set", "transactionTimeoutSeconds=60", "--set", "terminationGracePeriodSeconds=60")
	if err == nil || !strings.Contains(err.Error(), "must be longer than transactionTimeoutSeconds") {
		t.Errorf("a grace period equal to the transaction timeout rendered: %v", err)
	}
}

// TestChartAlertsCopy: the chart's PrometheusRule carries deploy/prometheus/alerts.yaml, which
// Helm cannot read from outside the chart: the copy must stay equal (cp
// deploy/prometheus/alerts.yaml deploy/helm/dwell/files/).
func TestChartAlertsCopy(t *testing.T) {
	a, err := os.ReadFile("../prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("dwell/files/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("deploy/helm/dwell/files/alerts.yaml differs from deploy/prometheus/alerts.yaml: cp deploy/prometheus/alerts.yaml deploy/helm/dwell/files/")
	}
}

// TestDecodeStrictRejectsUnknownFields: the decoding that TestChartRenders relies on fails on a
// misspelt or misplaced field, which Kubernetes would drop silently with a warning.
func TestDecodeStrictRejectsUnknownFields(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIp: None}\n",
		"apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec: {template: {spec: {terminationGracePeriod: 60}}}\n",
		"apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec: {endpoint: []}\n",
	} {
		if _, _, err := decodeStrict([]byte(doc)); err == nil {
			t.Errorf("decoded without error:\n%s", doc)
		}
	}
	if _, _, err := decodeStrict([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIP: None}\n")); err != nil {
		t.Errorf("a valid Service: %v", err)
	}
}
