package main

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
)

// TestQuotaStatus: a write the storage quota refused is 507, also wrapped.
func TestQuotaStatus(t *testing.T) {
	err := fmt.Errorf("upload %q: %w", "a.jpg", &core.QuotaError{Quota: 1 << 30, Held: 1<<30 - 10, Need: 20})
	if got := httpapi.StatusOf(err); got != http.StatusInsufficientStorage {
		t.Fatalf("httpapi.StatusOf(%v) = %d, want 507", err, got)
	}
	want := `upload "a.jpg": storage quota of 1.0 GiB reached: 1024.0 MiB held, 0 B being written, 20 B more needed`
	if err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
}
