// Command kindconfig reads a kind cluster configuration the way kind v0.33.0 reads one
// (`kind create cluster --config FILE`): apiVersion and kind first, then a strict decode into
// kind's own v1alpha4.Cluster with the YAML library and options kind uses (an unknown field,
// a field of the wrong type or a key given twice is an error), then kind's v1alpha4 defaults.
// It prints the result as JSON, each kubeadm config patch decoded into a map, for the test to
// check what the nodes' kubelets are given:
//
//	kindconfig FILE
//	out {"cluster": {...v1alpha4.Cluster after defaults...}, "patches": [[{...}, ...], ...]}
//
// "patches" holds, for the cluster and then for each node in order, its kubeadmConfigPatches
// decoded (each patch is one YAML document). A refusal is one line on stderr and exit 1.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	yaml "go.yaml.in/yaml/v3"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

type typeMeta struct {
	Kind       string `yaml:"kind,omitempty"`
	APIVersion string `yaml:"apiVersion,omitempty"`
}

func refuse(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kindconfig: "+format+"\n", args...)
	os.Exit(1)
}

func strict(raw []byte, into any) error {
	decoder := yaml.NewDecoder(bytes.NewReader(raw))
	decoder.KnownFields(true)
	return decoder.Decode(into)
}

func decodePatches(patches []string) [][]map[string]any {
	decoded := []map[string]any{}
	for _, patch := range patches {
		document := map[string]any{}
		if err := strict([]byte(patch), &document); err != nil {
			refuse("a kubeadm config patch is not YAML: %v", err)
		}
		decoded = append(decoded, document)
	}
	return [][]map[string]any{decoded}
}

func main() {
	if len(os.Args) != 2 {
		refuse("usage: kindconfig FILE")
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		refuse("%v", err)
	}
	meta := typeMeta{}
	if err := yaml.Unmarshal(raw, &meta); err != nil {
		refuse("could not determine kind / apiVersion: %v", err)
	}
	if meta.APIVersion != "kind.x-k8s.io/v1alpha4" || meta.Kind != "Cluster" {
		refuse("not a kind.x-k8s.io/v1alpha4 Cluster: %s %s", meta.APIVersion, meta.Kind)
	}
	cluster := &v1alpha4.Cluster{}
	if err := strict(raw, cluster); err != nil {
		refuse("unable to decode config: %v", err)
	}
	v1alpha4.SetDefaultsCluster(cluster)
	patches := decodePatches(cluster.KubeadmConfigPatches)
	for _, node := range cluster.Nodes {
		patches = append(patches, decodePatches(node.KubeadmConfigPatches)...)
	}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(map[string]any{"cluster": cluster, "patches": patches}); err != nil {
		refuse("%v", err)
	}
}
