package core

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
)

// The storage quota (Options.StorageQuota, `dweb serve --quota`,
// docs/backup.md): a bound on the bytes of complete blobs the node's store
// keeps itself (blobsync.Store.Usage: inline and <hex>.data files; blobs in
// reference mode live in the app's files and are not counted). Before a
// download or an add writes a blob of n bytes, reserveStorage checks
//
//	held + reserved + n <= quota
//
// where held is the store's usage now and reserved the sizes of the other
// writes under way, and fails with a *QuotaError otherwise. The check is
// conservative: a blob the store already holds, or the verified part of a
// partial download, is counted again while its write runs.

// ErrQuota is the sentinel of a write refused by the storage quota; test
// with errors.Is. The error itself is a *QuotaError with the figures.
var ErrQuota = errors.New("storage quota reached")

// QuotaError is a write the storage quota refused: Held bytes of complete
// blobs in the store plus Reserved bytes of other writes under way plus
// Need would exceed Quota (all in bytes). errors.Is(err, ErrQuota) holds.
// The HTTP API answers it with 507 Insufficient Storage.
type QuotaError struct {
	Quota    int64 // Options.StorageQuota
	Held     int64 // bytes of complete blobs in the store
	Reserved int64 // bytes of other downloads and adds under way
	Need     int64 // bytes of the refused write
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("storage quota of %s reached: %s held, %s being written, %s more needed",
		FormatSize(e.Quota), FormatSize(e.Held), FormatSize(e.Reserved), FormatSize(e.Need))
}

// Is makes errors.Is(err, ErrQuota) hold.
func (e *QuotaError) Is(target error) bool { return target == ErrQuota }

// quotaState is the bytes of writes under way and the store's usage as
// last read; a field of backupState.
type quotaState struct {
	mu       sync.Mutex
	reserved int64
	held     int64 // bytes of complete blobs at the last read; valid if read
	read     bool
}

// lastStoreBytes returns the store's bytes as last read (by a quota check,
// a backup pass or StorageUsage), or -1 before the first read. It does not
// touch the store, so it is safe after Close.
func (b *Backend) lastStoreBytes() int64 {
	q := &b.bk.quota
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.read {
		return -1
	}
	return q.held
}

// refreshStoreBytes reads the store's usage for lastStoreBytes (errors are
// logged). Call it while the Backend is open.
func (b *Backend) refreshStoreBytes() {
	u, err := b.blobs.Usage()
	if err != nil {
		b.log.Warn("read the store's usage", "err", err)
		return
	}
	q := &b.bk.quota
	q.mu.Lock()
	q.held, q.read = u.Bytes+u.PackDeadBytes, true
	q.mu.Unlock()
}

// StorageUsage is what the node's blob store holds against its quota.
type StorageUsage struct {
	Quota    int64 `json:"quota"`     // bytes; 0: no quota
	Blobs    int64 `json:"blobs"`     // complete blobs the store keeps itself
	Bytes    int64 `json:"bytes"`     // their bytes (the quota bounds these and PackDeadBytes)
	RefBlobs int64 `json:"ref_blobs"` // complete blobs in reference mode (not counted)
	RefBytes int64 `json:"ref_bytes"`
	Reserved int64 `json:"reserved"` // bytes of downloads and adds under way
	// PackDeadBytes: bytes of deleted blobs still in pack files until GC
	// compacts them (blobsync.Usage); counted against the quota.
	PackDeadBytes int64 `json:"pack_dead_bytes"`
}

// StorageUsage reports the store's usage, the quota and the bytes reserved
// by writes under way. The store keeps the figures (blobsync's Usage: one
// scan of its entries on first use, O(blobs), then O(1)); call it while the
// Backend is open (not after Close).
func (b *Backend) StorageUsage() (StorageUsage, error) {
	u, err := b.blobs.Usage()
	if err != nil {
		return StorageUsage{}, err
	}
	q := &b.bk.quota
	q.mu.Lock()
	reserved := q.reserved
	q.held, q.read = u.Bytes+u.PackDeadBytes, true
	q.mu.Unlock()
	return StorageUsage{Quota: b.opts.StorageQuota, Blobs: u.Blobs, Bytes: u.Bytes,
		RefBlobs: u.RefBlobs, RefBytes: u.RefBytes, Reserved: reserved, PackDeadBytes: u.PackDeadBytes}, nil
}

// reserveStorage reserves need bytes (the size of a blob about to be
// downloaded or added) against the quota and returns the function that
// releases them, to call once the write ended, whatever its outcome. With
// no quota it reserves nothing and never fails. Errors: a *QuotaError
// (errors.Is ErrQuota); a store error reading its usage; a negative need
// is a *BadInputError.
func (b *Backend) reserveStorage(need int64) (release func(), err error) {
	if need < 0 {
		return nil, badInput(fmt.Errorf("reserve storage: negative size %d", need))
	}
	quota := b.opts.StorageQuota
	if quota <= 0 {
		return func() {}, nil
	}
	q := &b.bk.quota
	q.mu.Lock()
	defer q.mu.Unlock()
	u, err := b.blobs.Usage() // under q.mu: two writes cannot both pass on one figure
	if err != nil {
		return nil, fmt.Errorf("reserve storage: %w", err)
	}
	held := u.Bytes + u.PackDeadBytes // dead pack bytes are on disk until GC compacts them
	q.held, q.read = held, true
	if held+q.reserved+need > quota {
		return nil, &QuotaError{Quota: quota, Held: held, Reserved: q.reserved, Need: need}
	}
	q.reserved += need
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			q.reserved -= need
			q.mu.Unlock()
		})
	}, nil
}

// sizeUnits are the suffixes ParseSize accepts, longest first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

// ParseSize parses a byte count: a non-negative number (integer or
// decimal) with an optional unit, case-insensitive, space allowed between:
// B; KiB, MiB, GiB, TiB (powers of 1024, also K, M, G, T); KB, MB, GB, TB
// (powers of 1000). "50GiB" is 53687091200. A result over 2^63-1 bytes, a
// fraction of a byte left after the unit, or anything else is an error
// (*BadInputError).
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	if t == "" || strings.ContainsAny(t, "+-eE_") {
		return 0, badInput(fmt.Errorf("size %q: want a number of bytes with an optional unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s))
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n > math.MaxInt64/mult {
			return 0, badInput(fmt.Errorf("size %q: too large", s))
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, badInput(fmt.Errorf("size %q: want a number of bytes with an optional unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s))
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 {
		return 0, badInput(fmt.Errorf("size %q: too large", s))
	}
	if v != math.Trunc(v) {
		return 0, badInput(fmt.Errorf("size %q: not a whole number of bytes", s))
	}
	return int64(v), nil
}

// FormatSize prints n bytes in binary units with one decimal ("1.5 GiB"),
// or "N B" under 1 KiB.
func FormatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGT"[exp])
}
