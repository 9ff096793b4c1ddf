//go:build tools

// Package tools pins the JobSet command this module builds (its manager is the module's root package).
package tools

import _ "sigs.k8s.io/jobset"
