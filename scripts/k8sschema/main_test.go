package main

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFileName(t *testing.T) {
	tests := []struct {
		gvk  gvk
		want string
	}{
		{gvk{"apps", "v1", "Deployment"}, "deployment-apps-v1.json"},
		{gvk{"", "v1", "ConfigMap"}, "configmap-v1.json"},
		{gvk{"networking.k8s.io", "v1", "NetworkPolicy"}, "networkpolicy-networking-v1.json"},
		{gvk{"rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"}, "clusterrolebinding-rbac-v1.json"},
		{gvk{"autoscaling", "v2", "HorizontalPodAutoscaler"}, "horizontalpodautoscaler-autoscaling-v2.json"},
	}
	for _, tt := range tests {
		if got := fileName(tt.gvk); got != tt.want {
			t.Errorf("fileName(%v) = %q, want %q", tt.gvk, got, tt.want)
		}
	}
}

func TestExpand(t *testing.T) {
	var defs map[string]map[string]any
	if err := json.Unmarshal([]byte(`{
	  "a.Thing": {"type": "object", "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Thing"}],
	    "properties": {"port": {"$ref": "#/definitions/`+intOrString+`"}, "cpu": {"$ref": "#/definitions/`+quantity+`"},
	      "child": {"$ref": "#/definitions/a.Node"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
	  "a.Node": {"type": "object", "properties": {"name": {"type": "string"}, "next": {"$ref": "#/definitions/a.Node"}}},
	  "`+intOrString+`": {"type": "string", "format": "int-or-string"},
	  "`+quantity+`": {"type": "string"}
	}`), &defs); err != nil {
		t.Fatal(err)
	}
	g := &generator{defs: defs}
	got := g.expand(defs["a.Thing"], map[string]bool{"a.Thing": true})
	var want any
	if err := json.Unmarshal([]byte(`{
	  "type": "object", "additionalProperties": false,
	  "properties": {
	    "port": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
	    "cpu": {"oneOf": [{"type": "string"}, {"type": "number"}]},
	    "child": {"type": "object", "additionalProperties": false,
	      "properties": {"name": {"type": ["string", "null"]}, "next": {}}},
	    "labels": {"type": "object", "additionalProperties": {"type": ["string", "null"]}}
	  }}`), &want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("expand (-want +got):\n%s", diff)
	}
}
