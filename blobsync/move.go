package blobsync

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/dwebkit/dweb/internal/store"
)

// ExportMoved is the method ExportMove reports when it moved the store's
// data file to the destination instead of copying it.
const ExportMoved ExportMethod = 254

// ExportAssembled is the method ExportFileMove reports for a chunked
// file it wrote from its chunks (ExportChunkedRef) when none of them
// could become a reference into the output (all shared or inline), and
// ExportFileMethod for every chunked file (ExportChunked).
const ExportAssembled ExportMethod = 253

// moveIntent is the Pebble value (CBOR, at store.Key(store.PrefixMove,
// hash)) that ExportMove writes before it touches a file and deletes
// once the move is complete: what recoverMoves needs to finish or undo a
// move a crash interrupted.
type moveIntent struct {
	Dst string `cbor:"1,keyasint"` // the absolute destination
	Tmp string `cbor:"2,keyasint"` // the temp link beside it
	Mod int64  `cbor:"3,keyasint"` // the data file's mtime (Unix ns) before the move
}

func moveKey(h Hash) []byte { return store.Key(store.PrefixMove, h[:]) }

// moveStep names the points of ExportMove after which a crash leaves a
// different state on disk; tests stop a move there (Store.moveHook).
type moveStep string

const (
	moveIntentWritten moveStep = "intent"   // the intent is synced; no file touched
	moveLinked        moveStep = "linked"   // the temp link beside dst exists, its directory synced
	moveRenamed       moveStep = "renamed"  // dst is the store's data file (two names, one inode)
	moveEntryWritten  moveStep = "entry"    // the entry is reference-mode (dst, Mod)
	moveUnlinked      moveStep = "unlinked" // the store's name is gone, its directory synced
)

// errMoveUnsupported: the destination's file system cannot take a hard
// link to the store's data file (another file system, or none at all).
var errMoveUnsupported = errors.New("hard link to the destination not possible")

// ExportMove writes blob h to the file dst, as Export does, but without
// the store keeping its own copy: when the blob is a large blob held as
// the store's own data file (<hex>.data), that file becomes dst (no byte
// is read or written) and the blob's entry becomes a reference-mode entry
// for dst, as AddFileRef makes: the store still holds, lists and serves
// the blob, from dst, as long as dst keeps the size and modification time
// it had; once it changes, Open, Export and Serve refuse the blob
// (ErrCorrupt, "changed since it was imported") and nothing unverified is
// served. Delete and GC never remove dst.
//
// It falls back to Export (a copy; the store keeps its own) and reports
// the method used when the blob is inline (at most ChunkGroupSize bytes),
// already in reference mode, or dst is on another file system than the
// store or on one without hard links (EXDEV, EPERM, EMLINK, EOPNOTSUPP).
// An existing dst is replaced atomically.
//
// The steps, each durable before the next: a move intent (dst, temp
// name, the data file's mtime) in Pebble, synced; a hard link of the data
// file to a temp name beside dst, its directory synced; the rename over
// dst, the directory synced; the entry rewritten in reference mode,
// synced; the store's name unlinked and the store's directory synced; the
// intent deleted. OpenStore finishes or undoes a move a crash interrupted
// (recoverMoves). The two names of the data file exist only between the
// link and the unlink; while they do, the store serves the file only if
// its mtime is still the recorded one, as in reference mode.
//
// Errors: Export's (ErrNotFound for a blob not complete, ErrCorrupt for a
// missing or changed data file), ctx's, or the file system's.
func (s *Store) ExportMove(ctx context.Context, h Hash, dst string) (ExportMethod, error) {
	abs, err := filepath.Abs(dst)
	if err != nil {
		return 0, fmt.Errorf("blobsync: export %s: %w", h, err)
	}
	unlock, err := s.lock(ctx, h)
	if err != nil {
		return 0, err
	}
	m, err := s.moveLocked(ctx, h, abs)
	unlock()
	if errors.Is(err, errMoveUnsupported) {
		s.log.Debug("blobsync: move not possible, copying", "hash", h, "dst", abs, "err", err)
		return s.export(ctx, h, abs, s.exportFrom)
	}
	if err != nil {
		return 0, fmt.Errorf("blobsync: move %s to %s: %w", h, abs, err)
	}
	if m != ExportMoved {
		return s.export(ctx, h, abs, s.exportFrom)
	}
	return m, nil
}

// moveLocked is ExportMove under h's lock. It returns ExportAuto (and no
// error) when the blob is not a candidate (inline, reference mode), and
// an error wrapping errMoveUnsupported when the link is refused; neither
// has changed anything.
func (s *Store) moveLocked(ctx context.Context, h Hash, dst string) (ExportMethod, error) {
	e, err := s.getEntry(h)
	if err != nil {
		return 0, err
	}
	if e.Size <= inlineMax || e.RefPath != "" || e.Pack != "" || s.inStoreDir(dst) {
		return ExportAuto, nil
	}
	f, err := s.openFile(h, e)
	if err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	f.Close()
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	mv := moveIntent{
		Dst: dst,
		Tmp: filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+"."+strconv.FormatInt(time.Now().UnixNano(), 36)+".part"),
		Mod: fi.ModTime().UnixNano(),
	}
	b, err := entryEnc.Marshal(mv)
	if err != nil {
		return 0, err
	}
	if err := s.db.Set(moveKey(h), b, true); err != nil {
		return 0, err
	}
	s.setMoving(h, &mv)
	defer s.setMoving(h, nil)
	if err := s.moveStepDone(moveIntentWritten); err != nil {
		return 0, err
	}
	data := s.dataPath(h)
	if err := os.Link(data, mv.Tmp); err != nil {
		s.db.Delete(moveKey(h), true)
		if linkUnsupported(err) {
			return 0, fmt.Errorf("%w: %v", errMoveUnsupported, err)
		}
		return 0, err
	}
	undo := func(err error) (ExportMethod, error) {
		os.Remove(mv.Tmp)
		s.db.Delete(moveKey(h), true)
		return 0, err
	}
	// The store's data files are 0600; the user's file gets Export's mode.
	if err := os.Chmod(mv.Tmp, 0o644); err != nil {
		return undo(err)
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return undo(err)
	}
	if err := s.moveStepDone(moveLinked); err != nil {
		return 0, err
	}
	// The last chance to stop before dst changes.
	if err := ctx.Err(); err != nil {
		return undo(err)
	}
	if err := os.Rename(mv.Tmp, dst); err != nil {
		return undo(err)
	}
	// dst is now the store's data file: finish even if the sync fails
	// (the intent stays then, and OpenStore finishes again).
	serr := syncDir(filepath.Dir(dst))
	if err := s.moveStepDone(moveRenamed); err != nil {
		return 0, err
	}
	if err := s.finishMove(h, e, mv); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	s.log.Debug("blobsync: moved", "hash", h, "dst", dst, "bytes", e.Size)
	return ExportMoved, nil
}

// inStoreDir reports whether dst's directory is the store's own (by
// inode, whatever the path says): a move there could rename the data
// file onto itself and then unlink it, so Export copies instead.
func (s *Store) inStoreDir(dst string) bool {
	a, err := os.Stat(filepath.Dir(dst))
	if err != nil {
		return false // the link or rename fails and says why
	}
	b, err := os.Stat(s.dir)
	return err == nil && os.SameFile(a, b)
}

// finishMove does a move's last steps once dst is the store's data file:
// the entry in reference mode for dst at the recorded mtime, the store's
// name unlinked and its directory synced, the intent deleted. Each is
// safe to repeat.
func (s *Store) finishMove(h Hash, e entry, mv moveIntent) error {
	e.RefPath, e.RefMod = mv.Dst, mv.Mod
	if err := s.putEntry(h, e); err != nil {
		return err
	}
	if err := s.moveStepDone(moveEntryWritten); err != nil {
		return err
	}
	if err := os.Remove(s.dataPath(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	if err := s.moveStepDone(moveUnlinked); err != nil {
		return err
	}
	return s.db.Delete(moveKey(h), true)
}

// moveStepDone calls the test hook after step; an error from it stands
// for a crash there: the move stops and leaves things as they are.
func (s *Store) moveStepDone(step moveStep) error {
	if s.moveHook == nil {
		return nil
	}
	return s.moveHook(step)
}

// setMoving records (mv) or forgets (nil) the move of h in progress, for
// openData.
func (s *Store) setMoving(h Hash, mv *moveIntent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mv == nil {
		delete(s.moving, h)
		return
	}
	s.moving[h] = *mv
}

// movingMod returns the recorded mtime of h's data file while a move of
// it runs.
func (s *Store) movingMod(h Hash) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mv, ok := s.moving[h]
	return mv.Mod, ok
}

// recoverMoves finishes or undoes the moves a crash interrupted (OpenStore
// runs it before the store is used). For each intent left in Pebble:
//
//   - the entry is already reference-mode for the intent's dst: the move
//     was past its entry write; the store's leftover name is unlinked;
//   - the entry still names the store's own data file and dst is that
//     file (same inode): the rename happened; the move is finished (entry
//     in reference mode at the recorded mtime, so an edit made since is
//     refused, never served; the store's name unlinked);
//   - else the rename did not happen: the temp link, if it is the store's
//     data file, is removed and the store keeps its copy; dst is
//     untouched.
//
// Then the intent is deleted. A blob without a complete entry (which
// cannot happen while a move holds its lock) only loses its intent. A
// recovery that fails (a file system error) or an intent that cannot be
// decoded is logged and left for the next open; the store opens all the
// same, so that one file's leftover never keeps a node from starting. Only
// a failure to read Pebble fails it.
func (s *Store) recoverMoves() error {
	type pending struct {
		h  Hash
		mv moveIntent
	}
	var todo []pending
	prefix := []byte(store.PrefixMove)
	err := s.db.Scan(prefix, func(k, v []byte) error {
		var p pending
		if len(k) != len(prefix)+len(p.h) {
			return nil
		}
		copy(p.h[:], k[len(prefix):])
		if err := entryDec.Unmarshal(v, &p.mv); err != nil {
			s.log.Error("blobsync: a move intent cannot be read: left as it is", "hash", p.h, "err", err)
			return nil
		}
		todo = append(todo, p)
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range todo {
		if err := s.recoverMove(p.h, p.mv); err != nil {
			// The node starts all the same: the intent stays for the next
			// open, and until then opens of the blob's data file are held
			// to the recorded mtime, as during the move itself.
			s.log.Error("blobsync: an interrupted move could not be finished or undone: tried again at the next open", "hash", p.h, "dst", p.mv.Dst, "err", err)
			s.moving[p.h] = p.mv
		}
	}
	return nil
}

func (s *Store) recoverMove(h Hash, mv moveIntent) error {
	e, found, err := s.rawEntry(h)
	if err != nil {
		return err
	}
	if found && e.State == stateComplete && e.RefPath == mv.Dst && e.RefMod == mv.Mod {
		s.log.Info("blobsync: finishing an interrupted move (unlink)", "hash", h, "dst", mv.Dst)
		return s.finishMove(h, e, mv)
	}
	data, derr := os.Lstat(s.dataPath(h))
	if found && e.State == stateComplete && e.RefPath == "" && derr == nil {
		if fi, err := os.Lstat(mv.Dst); err == nil && os.SameFile(fi, data) {
			s.log.Info("blobsync: finishing an interrupted move (entry)", "hash", h, "dst", mv.Dst)
			return s.finishMove(h, e, mv)
		}
		if fi, err := os.Lstat(mv.Tmp); err == nil && os.SameFile(fi, data) {
			s.log.Info("blobsync: undoing an interrupted move", "hash", h, "dst", mv.Dst)
			if err := os.Remove(mv.Tmp); err != nil {
				return err
			}
			if err := syncDir(filepath.Dir(mv.Tmp)); err != nil {
				return err
			}
		}
	}
	return s.db.Delete(moveKey(h), true)
}

// DropBrokenRef deletes blob h if it is a reference-mode blob whose file
// no longer has the size and mtime recorded (edited, moved away or
// deleted since AddFileRef or ExportMove), so that it can be fetched
// again; the file itself is left alone. It reports whether it deleted
// the blob; a blob held otherwise, or whose file is intact, stays.
func (s *Store) DropBrokenRef(h Hash) (bool, error) {
	unlock, err := s.lock(context.Background(), h)
	if err != nil {
		return false, err
	}
	defer unlock()
	e, err := s.getEntry(h)
	if err != nil || e.RefPath == "" {
		return false, nil
	}
	f, err := s.openFile(h, e)
	if err == nil {
		f.Close()
		return false, nil
	}
	if !errors.Is(err, ErrCorrupt) {
		return false, err
	}
	s.log.Info("blobsync: dropping a broken reference", "hash", h, "path", e.RefPath, "err", err)
	return true, s.deleteLocked(h)
}
