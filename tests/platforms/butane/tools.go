//go:build tools

// Package tools pins Butane's command in this module's go.mod and go.sum.
package tools

import _ "github.com/coreos/butane/internal"
