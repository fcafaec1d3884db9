// Wrapper module: builds Kubeflow training-operator v1 (cmd/training-operator.v1) for bench/scale.py only.
// Its code and CRDs are never copied into this repository: they come from the Go module cache.
module lepton.ai/bench/training-operator

go 1.26.0

require github.com/kubeflow/training-operator v1.8.1
