package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/core"
)

// TestDrainCLI: against a real daemon, a group whose only member is this
// node (its new repo's empty collection is held by it alone) does not drain
// without a target: the command reports the blob, exits 1, and --leave
// keeps the group. An unknown group fails; a malformed --to is a usage
// error.
func TestDrainCLI(t *testing.T) {
	t.Setenv("DWEB_DRAIN_TO", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	data, _ := startDaemon(t, ctx)
	if code, _, errOut := runCLI(t, "--data", data, "--json", "group", "create", "news"); code != 0 {
		t.Fatalf("group create: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "--data", data, "drain", "--to", "dweb+admin:?v=1"); code != 2 {
		t.Fatalf("drain with a malformed --to: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "--data", data, "drain", "--group", "nope"); code != 1 || !strings.Contains(errOut, "unknown group") {
		t.Fatalf("drain of an unknown group: exit %d: %s", code, errOut)
	}
	code, out, errOut := runCLI(t, "--data", data, "drain")
	if code != 1 || !strings.Contains(out, "HANDED OVER") || !strings.Contains(out, `news: unplaced "collection of repo`) || !strings.Contains(out, "--to") {
		t.Fatalf("drain: exit %d: %s %s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "--data", data, "--json", "drain", "--group", "news", "--leave")
	var rep core.DrainReport
	if err := json.Unmarshal([]byte(out), &rep); code != 1 || err != nil || rep.Complete || len(rep.Groups) != 1 || rep.Groups[0].Left ||
		rep.Groups[0].Name != "news" || rep.Groups[0].Checked != 1 || rep.Groups[0].UnplacedN != 1 {
		t.Fatalf("drain --leave: exit %d: %s %s", code, out, errOut)
	}
	if code, out, _ := runCLI(t, "--data", data, "--json", "group", "list"); code != 0 || !strings.Contains(out, "news") {
		t.Fatalf("the group is gone after an incomplete drain --leave: %s", out)
	}
}
