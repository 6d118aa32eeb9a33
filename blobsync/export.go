package blobsync

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dwebkit/dweb/internal/ctxio"
)

// ExportMethod is how Export writes a blob's bytes to the destination
// file: the first method it tries; each falls back to the next when the
// kernel or the file system refuses it.
type ExportMethod uint8

const (
	// ExportAuto (the zero value): a reflink where the file system can
	// (FICLONE: btrfs, XFS, bcachefs...; the destination shares the
	// store's extents, no byte is read or written), else copy_file_range
	// (the kernel copies, no user-space buffer), else ExportCopy.
	ExportAuto ExportMethod = iota
	// ExportCopyRange starts at copy_file_range, skipping the reflink.
	ExportCopyRange
	// ExportCopy reads the bytes into this process and writes them out
	// (io.CopyBuffer): what Export did before it knew the other two.
	ExportCopy
)

// exportReflink is the method Export reports when the reflink worked
// (ExportAuto names the attempt, this the outcome).
const exportReflink ExportMethod = 255

func (m ExportMethod) String() string {
	switch m {
	case ExportAuto:
		return "auto"
	case exportReflink:
		return "reflink"
	case ExportMoved:
		return "move"
	case ExportMirrored:
		return "mirror"
	case ExportAssembled:
		return "assemble"
	case ExportCopyRange:
		return "copy_file_range"
	case ExportCopy:
		return "copy"
	}
	return fmt.Sprintf("ExportMethod(%d)", uint8(m))
}

// ParseExportMethod parses "auto" (or ""), "copy_file_range" or "copy".
func ParseExportMethod(s string) (ExportMethod, error) {
	switch strings.TrimSpace(s) {
	case "", "auto":
		return ExportAuto, nil
	case "copy_file_range":
		return ExportCopyRange, nil
	case "copy":
		return ExportCopy, nil
	}
	return 0, fmt.Errorf("blobsync: export method %q: want auto, copy_file_range or copy", s)
}

// exportChunkDefault: copy_file_range moves at most this many bytes per
// call, so a cancelled context stops an export within one chunk.
const exportChunkDefault = 64 << 20

// Export writes blob h's bytes to the file dst (mode 0644): through a
// ".part" temp file in dst's directory, fsynced and renamed, then the
// directory synced, so dst is never left partial and an existing dst is
// replaced atomically. Only a complete, verified blob is exported
// (ErrNotFound otherwise; ErrCorrupt if its data file is missing, has the
// wrong size, or, in reference mode, changed since it was imported).
//
// The bytes go by reflink, else copy_file_range, else through a buffer
// (ExportMethod; StoreOptions.Export picks the first to try). A cancelled
// ctx stops the copy within one chunk (64 MiB, or one 256 KiB buffer) and
// removes the temp file.
func (s *Store) Export(ctx context.Context, h Hash, dst string) error {
	_, err := s.export(ctx, h, dst, s.exportFrom)
	return err
}

// export is Export starting at method from; it returns the method that
// wrote the bytes.
func (s *Store) export(ctx context.Context, h Hash, dst string, from ExportMethod) (ExportMethod, error) {
	e, err := s.getEntry(h)
	if err != nil {
		return 0, err
	}
	var used ExportMethod
	err = writeExport(ctx, h, dst, func(f *os.File) error {
		var err error
		used, err = s.exportEntry(ctx, h, e, f, from)
		return err
	})
	if err != nil {
		return 0, err
	}
	s.log.Debug("blobsync: exported", "hash", h, "dst", dst, "bytes", e.Size, "method", used)
	return used, nil
}

// exportInto writes blob h's bytes to the empty file f, starting at
// method from; it returns the method that wrote them.
func (s *Store) exportInto(ctx context.Context, h Hash, f *os.File, from ExportMethod) (ExportMethod, error) {
	e, err := s.getEntry(h)
	if err != nil {
		return 0, err
	}
	return s.exportEntry(ctx, h, e, f, from)
}

// exportEntry is exportInto for h's entry e.
func (s *Store) exportEntry(ctx context.Context, h Hash, e entry, f *os.File, from ExportMethod) (ExportMethod, error) {
	if e.Size <= inlineMax {
		_, err := io.Copy(f, ctxio.NewReader(ctx, bytes.NewReader(e.Inline)))
		return ExportCopy, err
	}
	src, off, err := s.openData(h, e)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	if e.Pack != "" && from == ExportAuto {
		from = ExportCopyRange // a reflink would clone the whole pack
	}
	return s.exportData(ctx, f, src, off, e.Size, from)
}

// writeExport writes file dst of blob or file h atomically: write fills a
// ".part" temp file in dst's directory, which is then made mode 0644,
// fsynced, closed and, unless ctx ended meanwhile (the last chance to
// stop before dst changes), renamed to dst, and the directory synced. On
// any error the temp file is removed and dst is untouched; the error
// names h and dst. Export and ExportChunked write through it.
func writeExport(ctx context.Context, h Hash, dst string, write func(f *os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*.part")
	if err != nil {
		return fmt.Errorf("blobsync: export %s: %w", h, err)
	}
	tmp := f.Name()
	err = write(f)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("blobsync: export %s to %s: %w", h, dst, err)
	}
	return syncDir(filepath.Dir(dst))
}

// exportData writes the size bytes of src at offset off (0 but for a
// packed blob, which is never reflinked) to the empty file dst, starting
// at method from and falling back while nothing has been written; it
// returns the method that wrote them.
func (s *Store) exportData(ctx context.Context, dst, src *os.File, off, size int64, from ExportMethod) (ExportMethod, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if from == ExportAuto {
		if reflink(dst, src) {
			return exportReflink, nil
		}
		from = ExportCopyRange
	}
	if from == ExportCopyRange {
		chunk := s.exportChunk
		if chunk <= 0 {
			chunk = exportChunkDefault
		}
		done, ok, err := copyRange(ctx, dst, src, off, size, chunk, s.exportHook)
		if ok || err != nil {
			return ExportCopyRange, err
		}
		if done != 0 {
			return 0, fmt.Errorf("blobsync: internal error: copy_file_range refused after %d bytes", done)
		}
	}
	// Plain copy, from offset off whatever the descriptors' positions.
	r := &hookReader{r: io.NewSectionReader(src, off, size), hook: s.exportHook}
	n, err := io.CopyBuffer(onlyWriter{dst}, ctxio.NewReader(ctx, r), make([]byte, ioBufSize))
	if err == nil && n != size {
		err = fmt.Errorf("%w: data file shrank to %d bytes while exported (want %d)", ErrCorrupt, n, size)
	}
	return ExportCopy, err
}

// onlyWriter hides *os.File's ReadFrom, which would use copy_file_range
// itself: ExportCopy means a copy through this process.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// hookReader calls hook (tests) with the bytes read so far after each Read.
type hookReader struct {
	r    io.Reader
	n    int64
	hook func(int64)
}

func (h *hookReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.n += int64(n)
	if h.hook != nil && n > 0 {
		h.hook(h.n)
	}
	return n, err
}
