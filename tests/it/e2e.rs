//! End to end against a real kube-apiserver, the envtest way.
//!
//! One etcd + kube-apiserver (v1.36, from `KUBEBUILDER_ASSETS`) is started
//! on loopback for the whole test process and shared by the tests below,
//! which take turns on it. Each test starts its own `virt-sizer serve`
//! (cluster mode, a kubeconfig for that apiserver) and registers the
//! MutatingWebhookConfiguration *rendered from manifests/* with `kubectl
//! kustomize`, only pointed at `https://127.0.0.1:PORT/<path>` with the
//! test CA, so the shipped selectors, rules, matchConditions and failure
//! policies are what gets tested. What the apiserver *stores* is compared
//! with what `virt-sizer review --patched` computes offline for the same
//! objects.
//!
//! Without assets the tests say why and return; with `VIRT_SIZER_E2E=required`
//! (what `.ci/run` sets) a missing asset or a control plane that does not
//! come up fails them instead.
//!
//! | module | what the cluster does |
//! | --- | --- |
//! | `launchers` | launcher Pods of many VMI shapes under six profiles |
//! | `reinvocation` | a later webhook changes the Pod; virt-sizer is called again |
//! | `exclusions` | excluded namespaces and non-launcher Pods are never sent |
//! | `initial_sync` | Pods created during the first LIST of 1,000 VMIs are sized |
//! | `kata` | RuntimeClass create/update, a Kata Pod through the RuntimeClass plugin |
//! | `failure_policy` | virt-sizer down: base admits, fail-closed refuses |
//! | `outage` | the apiserver silent for virt-sizer: decisions say so, unready past the bound, current again at once |
//! | `overlays` | every kustomize overlay applies (`--dry-run=server`) |
//! | `probes` | plain-HTTP probe listener, client certificates from the apiserver |
//! | `cluster_inference` | `serve` with only `KUBECONFIG` runs in cluster mode |
//! | `kubevirt_absent` | no KubeVirt CRDs: ready, Kata sized, caches start when they appear |
//! | `kubevirt_baseline` | the KubeVirt CR is the built-in policy's baseline |
//! | `laptop` | `serve`'s embedded default as the cluster's webhook, across a restart |
//! | `policy_webhook` | the policy ConfigMap is checked at apply time |
//! | `self_certs` | `install.yaml` + `serve` with its own flags: the CA injected, rotated under load |
//! | `stale_cache` | get + list without watch: recreated VMIs and relabelled namespaces are followed |

mod api;
mod cluster_inference;
mod control_plane;
mod exclusions;
mod failure_policy;
mod initial_sync;
mod kata;
mod kubevirt_absent;
mod kubevirt_baseline;
mod laptop;
mod launchers;
mod objects;
mod outage;
mod overlays;
mod policy_webhook;
mod probes;
mod proxy;
mod reinvocation;
mod self_certs;
mod stale_cache;
mod webhook;
