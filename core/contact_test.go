package core

import (
	"path/filepath"
	"testing"

	"github.com/dwebkit/dweb/uri"
)

// TestMemberContactKeptAcrossRestarts: the contact code is made once, is
// the same on every call and after the node reopens its store, differs
// between nodes, and parses as a valid contact code.
func TestMemberContactKeptAcrossRestarts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a")
	open := func(dir string) *Backend {
		t.Helper()
		b, err := New(Options{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := open(dir)
	c1, err := a.MemberContact()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := a.MemberContact()
	if err != nil || c2.String() != c1.String() {
		t.Fatalf("second call: %v, %v", c2, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a = open(dir)
	defer a.Close()
	c3, err := a.MemberContact()
	if err != nil || c3.String() != c1.String() {
		t.Fatalf("after reopening: %v, %v (was %v)", c3, err, c1)
	}
	if _, err := uri.ParseContact(c3.String()); err != nil {
		t.Fatal(err)
	}
	b := open(filepath.Join(t.TempDir(), "b"))
	defer b.Close()
	other, err := b.MemberContact()
	if err != nil || other.String() == c1.String() {
		t.Fatalf("another node's contact: %v, %v", other, err)
	}
}
