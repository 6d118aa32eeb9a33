package main

import (
	"os"
	"regexp"
	"slices"
	"testing"
)

// TestHeaderMatchesExports checks that the hand-written dweb.h declares
// exactly the functions main.go exports.
func TestHeaderMatchesExports(t *testing.T) {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := os.ReadFile("dweb.h")
	if err != nil {
		t.Fatal(err)
	}
	var exports, declared []string
	for _, m := range regexp.MustCompile(`(?m)^//export (\w+)$`).FindAllSubmatch(src, -1) {
		exports = append(exports, string(m[1]))
	}
	for _, m := range regexp.MustCompile(`(?m)^[a-z].*?\b(dweb_\w+)\(`).FindAllSubmatch(hdr, -1) {
		declared = append(declared, string(m[1]))
	}
	slices.Sort(exports)
	slices.Sort(declared)
	if len(exports) == 0 || !slices.Equal(exports, declared) {
		t.Fatalf("exports %v\nheader  %v", exports, declared)
	}
}
