// Command kubeletcode runs the kubelet's own image credential provider code
// (k8s.io/kubernetes/pkg/credentialprovider/plugin) the way the kubelet runs it before a
// pull, with the API server's part (service accounts, token requests) played by the test
// that drives it. tests/test_kubelet_code.py builds it for each pinned Kubernetes release.
//
//	kubeletcode --config CREDENTIAL-PROVIDER-CONFIG --bin-dir PLUGIN-BIN-DIR [--feature-gates G=true]
//
// It registers the providers with RegisterCredentialProviderPlugins (the kubelet's config
// reading, strict decoding and validation included) and then speaks JSON lines: on stdout
// one message per line, on stdin one answer per line.
//
//	out {"registered": true}                       or {"refused": "..."} and exit 1
//	in  {"lookup": {"image": "...", "namespace": "...", "pod": "...", "podUID": "...",
//	                "serviceAccount": "..."}}
//	out {"ask": "serviceAccount", "namespace": "...", "name": "..."}
//	in  {"serviceAccount": {"uid": "...", "annotations": {...}}}   or {"error": "..."}
//	out {"ask": "token", "namespace": "...", "name": "...", "uid": "...",
//	     "audiences": [...], "boundObject": {"kind": "Pod", "name": "...", "uid": "..."}}
//	in  {"token": "..."}                                            or {"error": "..."}
//	out {"result": {"repository": "...", "credentials": [...], "found": bool,
//	                "runs": {"provider": n}, "errors": {"provider": n}, "log": [...]}}
//
// "runs" and "errors" are the kubelet's own metrics (kubelet_credential_provider_plugin_
// duration's count and ..._errors_total) since registration: how often each provider was
// executed. "log" holds what the kubelet logged during the lookup (klog at -v=5).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/credentialprovider"
	"k8s.io/kubernetes/pkg/credentialprovider/plugin"
	credentialprovidersecrets "k8s.io/kubernetes/pkg/credentialprovider/secrets"
	"k8s.io/kubernetes/pkg/util/parsers"
)

type lookup struct {
	Image          string `json:"image"`
	Namespace      string `json:"namespace"`
	Pod            string `json:"pod"`
	PodUID         string `json:"podUID"`
	ServiceAccount string `json:"serviceAccount"`
}

type answer struct {
	Lookup         *lookup `json:"lookup,omitempty"`
	ServiceAccount *struct {
		UID         string            `json:"uid"`
		Annotations map[string]string `json:"annotations"`
	} `json:"serviceAccount,omitempty"`
	Token *string `json:"token,omitempty"`
	Error string  `json:"error,omitempty"`
}

type credential struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type result struct {
	Repository  string            `json:"repository"`
	Credentials []credential      `json:"credentials"`
	Found       bool              `json:"found"`
	Runs        map[string]uint64 `json:"runs"`
	Errors      map[string]uint64 `json:"errors"`
	Log         []string          `json:"log"`
}

// The test at the other end of stdin and stdout: the kubelet's API server.
type peer struct {
	in  *bufio.Scanner
	out *json.Encoder
}

func (p *peer) send(message any) {
	if err := p.out.Encode(message); err != nil {
		fmt.Fprintf(os.Stderr, "kubeletcode: writing stdout: %v\n", err)
		os.Exit(2)
	}
}

func (p *peer) receive() (answer, bool) {
	var got answer
	if !p.in.Scan() {
		return got, false
	}
	if err := json.Unmarshal(p.in.Bytes(), &got); err != nil {
		fmt.Fprintf(os.Stderr, "kubeletcode: not a JSON answer: %v\n", err)
		os.Exit(2)
	}
	return got, true
}

func (p *peer) ask(question map[string]any) answer {
	p.send(question)
	got, ok := p.receive()
	if !ok {
		fmt.Fprintln(os.Stderr, "kubeletcode: stdin closed while waiting for an answer")
		os.Exit(2)
	}
	return got
}

// klog's output during one lookup.
type logBuffer struct {
	sync.Mutex
	bytes.Buffer
}

func (b *logBuffer) Write(data []byte) (int, error) {
	b.Lock()
	defer b.Unlock()
	return b.Buffer.Write(data)
}

func (b *logBuffer) take() []string {
	b.Lock()
	defer b.Unlock()
	text := strings.TrimRight(b.String(), "\n")
	b.Reset()
	if text == "" {
		return []string{}
	}
	return strings.Split(text, "\n")
}

// counts reads a per-plugin metric of the kubelet from the registry it registered with.
func counts(metric string) map[string]uint64 {
	found := map[string]uint64{}
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		return found
	}
	for _, family := range families {
		if family.GetName() != metric {
			continue
		}
		for _, sample := range family.GetMetric() {
			name := ""
			for _, label := range sample.GetLabel() {
				if label.GetName() == "plugin_name" {
					name = label.GetValue()
				}
			}
			if histogram := sample.GetHistogram(); histogram != nil {
				found[name] = histogram.GetSampleCount()
			} else if counter := sample.GetCounter(); counter != nil {
				found[name] = uint64(counter.GetValue())
			}
		}
	}
	return found
}

func main() {
	configPath := flag.String("config", "", "the kubelet's --image-credential-provider-config")
	binDir := flag.String("bin-dir", "", "the kubelet's --image-credential-provider-bin-dir")
	featureGates := flag.String("feature-gates", "", "the kubelet's --feature-gates (NAME=BOOL,...)")
	klogFlags := flag.NewFlagSet("klog", flag.ExitOnError)
	klog.InitFlags(klogFlags)
	flag.Parse()
	if *featureGates != "" {
		if err := utilfeature.DefaultMutableFeatureGate.Set(*featureGates); err != nil {
			fmt.Fprintf(os.Stderr, "kubeletcode: --feature-gates: %v\n", err)
			os.Exit(2)
		}
	}
	for name, value := range map[string]string{
		"v": "5", "logtostderr": "false", "alsologtostderr": "false",
		"stderrthreshold": "FATAL", "skip_headers": "true",
	} {
		if err := klogFlags.Set(name, value); err != nil {
			panic(err)
		}
	}
	// An error is written to the outputs of every lower severity as well: keep INFO's only,
	// where each line of the log arrives once.
	logs := &logBuffer{}
	klog.SetOutputBySeverity("INFO", logs)
	for _, severity := range []string{"WARNING", "ERROR", "FATAL"} {
		klog.SetOutputBySeverity(severity, io.Discard)
	}

	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	api := &peer{in: scanner, out: json.NewEncoder(os.Stdout)}

	getServiceAccount := func(namespace, name string) (*corev1.ServiceAccount, error) {
		got := api.ask(map[string]any{"ask": "serviceAccount", "namespace": namespace, "name": name})
		if got.Error != "" || got.ServiceAccount == nil {
			return nil, errors.New("serviceaccounts " + name + " not found: " + got.Error)
		}
		return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: name,
			UID: types.UID(got.ServiceAccount.UID), Annotations: got.ServiceAccount.Annotations,
		}}, nil
	}
	getToken := func(namespace, name string, request *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
		question := map[string]any{
			"ask": "token", "namespace": namespace, "name": name,
			"uid": string(request.UID), "audiences": request.Spec.Audiences,
		}
		if bound := request.Spec.BoundObjectRef; bound != nil {
			question["boundObject"] = map[string]string{
				"kind": bound.Kind, "name": bound.Name, "uid": string(bound.UID),
			}
		}
		got := api.ask(question)
		if got.Error != "" || got.Token == nil {
			return nil, errors.New("token request refused: " + got.Error)
		}
		issued := request.DeepCopy()
		issued.Status.Token = *got.Token
		return issued, nil
	}

	if err := plugin.RegisterCredentialProviderPlugins(*configPath, *binDir, getToken, getServiceAccount); err != nil {
		api.send(map[string]string{"refused": err.Error()})
		os.Exit(1)
	}
	api.send(map[string]bool{"registered": true})
	logs.take()

	for {
		got, ok := api.receive()
		if !ok {
			return
		}
		if got.Lookup == nil {
			fmt.Fprintln(os.Stderr, "kubeletcode: expected a lookup")
			os.Exit(2)
		}
		api.send(map[string]result{"result": pull(*got.Lookup, logs)})
	}
}

// pull looks credentials up as the kubelet's image manager does before it pulls an image:
// the repository without tag or digest, the pod's own provider keyring behind the node's
// (empty here), no image pull secrets.
func pull(request lookup, logs *logBuffer) result {
	found := result{Credentials: []credential{}}
	repository, _, _, err := parsers.ParseImageName(request.Image)
	if err != nil {
		found.Log = []string{"ParseImageName: " + err.Error()}
		return found
	}
	found.Repository = repository
	external := plugin.NewExternalCredentialProviderDockerKeyring(
		request.Namespace, request.Pod, request.PodUID, request.ServiceAccount)
	keyring, err := credentialprovidersecrets.MakeDockerKeyring(nil,
		credentialprovider.UnionDockerKeyring{&credentialprovider.BasicDockerKeyring{}, external})
	if err != nil {
		found.Log = []string{"MakeDockerKeyring: " + err.Error()}
		return found
	}
	auths, ok := keyring.Lookup(repository)
	found.Found = ok
	for _, auth := range auths {
		found.Credentials = append(found.Credentials,
			credential{Username: auth.Username, Password: auth.Password})
	}
	found.Runs = counts("kubelet_credential_provider_plugin_duration")
	found.Errors = counts("kubelet_credential_provider_plugin_errors_total")
	klog.Flush()
	found.Log = logs.take()
	return found
}
