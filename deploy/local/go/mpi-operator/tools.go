//go:build tools

// Package tools pins the MPI Operator command this module builds.
package tools

import _ "github.com/kubeflow/mpi-operator/cmd/mpi-operator"
