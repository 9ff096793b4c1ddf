//go:build tools

// Package tools pins the CoreDNS command this module builds (its main is the module's root package).
package tools

import _ "github.com/coredns/coredns"
