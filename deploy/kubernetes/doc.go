// Package kubernetes holds no code: its directory holds the Kubernetes
// manifests of ilamesh (README.md), and its test decodes every manifest
// into the k8s.io/api types and checks the flags, files and volumes they
// use against the binaries.
package kubernetes
