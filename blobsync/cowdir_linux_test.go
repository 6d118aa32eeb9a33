package blobsync

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// cowDir returns a directory on a file system that clones files (FICLONE):
// the test's temp dir when its file system does (btrfs, XFS), else, as
// root with mkfs.xfs (Debian's xfsprogs, which .ci/run installs), a 512
// MiB XFS image in the temp dir mounted through a loop device for the
// test's life. It skips the test when neither is possible.
func cowDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if canClone(t, dir) {
		return dir
	}
	mkfs, err := exec.LookPath("mkfs.xfs")
	if os.Geteuid() != 0 || err != nil {
		t.Skipf("the temp dir's file system does not clone files, and no XFS can be mounted here (root: %v, mkfs.xfs: %v)", os.Geteuid() == 0, err)
	}
	img, mnt := filepath.Join(dir, "xfs.img"), filepath.Join(dir, "mnt")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Truncate(512 << 20)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.xfs: %v: %s", err, out)
	}
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("mount the XFS image: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// A file still open under mnt (a goroutine of the test not yet
		// gone) makes umount refuse; a lazy one detaches the mount now
		// and frees the loop device when the last file closes.
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			if lout, lerr := exec.Command("umount", "-l", mnt).CombinedOutput(); lerr != nil {
				t.Errorf("umount %s: %v: %s; umount -l: %v: %s", mnt, err, out, lerr, lout)
			}
		}
	})
	if !canClone(t, mnt) {
		t.Fatalf("a fresh XFS with reflink=1 at %s does not clone files", mnt)
	}
	return mnt
}

// canClone reports whether dir's file system clones a file (FICLONE),
// with the store's own probe.
func canClone(t *testing.T, dir string) bool {
	t.Helper()
	return probeClone(dir, dir)
}
