package blobsync

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps blobsync transport-agnostic and below the layers that use
// it (DESIGN.md, "Layout").
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{
			"github.com/dwebkit/dweb/core", "github.com/dwebkit/dweb/group",
			"github.com/dwebkit/dweb/datarepo", "github.com/dwebkit/dweb/internal/transport",
			"github.com/dwebkit/dweb/internal/tunnel", "github.com/quic-go/",
		} {
			if strings.HasPrefix(dep, bad) {
				t.Errorf("blobsync imports %s", dep)
			}
		}
	}
}
