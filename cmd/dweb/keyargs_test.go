package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/dwebkit/dweb/internal/key"
)

// dashKey returns a record key whose text form starts with '-'.
func dashKey(t *testing.T) string {
	t.Helper()
	for range 100000 {
		if s := key.RecordKey(key.NewKeypair().ID()).String(); strings.HasPrefix(s, "-") {
			return s
		}
	}
	t.Fatal("no key starting with '-' in 100000 tries")
	return ""
}

// TestKeyArgStartingWithDash: a group key that starts with '-' is a
// positional argument, not shorthand flags: with no daemon the command gets
// as far as looking for one.
func TestKeyArgStartingWithDash(t *testing.T) {
	k := dashKey(t)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"--data", t.TempDir(), "group", "invite", k}, &out, &errb)
	if code != exitNoDaemon || !strings.Contains(errb.String(), "no daemon") {
		t.Fatalf("group invite %s: exit %d, %q; want the no-daemon error (exit %d)", k, code, errb.String(), exitNoDaemon)
	}
}

func TestProtectKeyArgs(t *testing.T) {
	k := dashKey(t)
	root := (&app{}).rootCmd()
	got := protectKeyArgs(root, []string{"file", "get", k, "name", "--repo", k, "-o", "x", "--", k})
	want := []string{"file", "get", keyArgMark + k, "name", "--repo", k, "-o", "x", "--", k}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("protectKeyArgs = %q, want %q", got, want)
	}
	unprotectKeyArgs(got)
	if got[2] != k {
		t.Fatalf("unprotectKeyArgs left %q", got[2])
	}
	// Flags and other dash arguments are left alone.
	if got := protectKeyArgs(root, []string{"--json", "-o", "-"}); strings.Join(got, " ") != "--json -o -" {
		t.Fatalf("protectKeyArgs changed flags: %q", got)
	}
}
