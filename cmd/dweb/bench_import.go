package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/spf13/cobra"
	"github.com/zeebo/blake3"
)

func init() { benchCommands = append(benchCommands, benchImportCmd) }

// benchImportResult is the JSON that `dweb bench import` prints. MB/s are
// 10^6 bytes of the file per second; the top-level figures are the medians
// of the rounds.
type benchImportResult struct {
	Size      int64   `json:"size"`
	ImportMBs float64 `json:"import_mb_s"` // Store.AddFile into a store on disk, durable
	HashMBs   float64 `json:"hash_1t_mb_s"`
	Ratio     float64 `json:"ratio"` // median of the rounds' import_mb_s / hash_1t_mb_s
	// HashTool says what hash_1t_mb_s measured: "b3sum --num-threads 1"
	// (the b3sum on PATH, its version after it) or "zeebo/blake3" (the Go
	// hasher, single-threaded, in this process) when b3sum is not there.
	HashTool string `json:"hash_1t_tool"`
	// CopyMBs: the same bytes copied to a new file in the store's
	// directory through a 1 MiB buffer and fsynced: what the disk takes
	// for a durable copy, the ceiling of an import that keeps a copy.
	CopyMBs     float64 `json:"copy_fsync_mb_s"`
	RatioToCopy float64 `json:"ratio_to_copy"` // median of import_mb_s / copy_fsync_mb_s
	// DiskMBs: what the disk takes at best, the ceiling of any import that
	// keeps a copy: the same byte count written from memory with O_DIRECT
	// by 4 writers into a preallocated file, then fsynced (Linux; absent
	// where O_DIRECT is refused).
	DiskMBs     float64 `json:"disk_direct_mb_s,omitempty"`
	RatioToDisk float64 `json:"ratio_to_disk,omitempty"` // median of import_mb_s / disk_direct_mb_s
	// RefMBs: Store.AddFileRef of the same file (reference mode: hash and
	// outboard, no copy), and its ratio to hash_1t_mb_s.
	RefMBs   float64 `json:"import_ref_mb_s"`
	RefRatio float64 `json:"ref_ratio"`
	// CLIMBs (--cli): the real `dweb file add GROUP FILE`, timed from the
	// CLI's start to its exit, against a fresh `dweb serve` each round:
	// CLI, local API, AddFile, the new collection; and its ratio to
	// hash_1t_mb_s.
	CLIMBs   float64 `json:"cli_file_add_mb_s,omitempty"`
	CLIRatio float64 `json:"cli_ratio,omitempty"`
	// CLIRefMBs (--cli): the real `dweb file add --no-store-copy GROUP
	// FILE`, timed the same way against another fresh `dweb serve` of
	// the round (the store keeps the file by reference: hash and
	// outboard, no copy; the bench fails unless the daemon says
	// "reference"); and its ratio to the same round's hash_1t_mb_s.
	CLIRefMBs   float64            `json:"cli_file_add_ref_mb_s,omitempty"`
	CLIRefRatio float64            `json:"cli_ref_ratio,omitempty"`
	Hash        string             `json:"hash"`
	Verified    bool               `json:"verified"` // every import's hash was the baseline's
	Cores       int                `json:"cores"`
	Rounds      []benchImportRound `json:"rounds"`
}

type benchImportRound struct {
	ImportMBs float64 `json:"import_mb_s"`
	HashMBs   float64 `json:"hash_1t_mb_s"`
	CopyMBs   float64 `json:"copy_fsync_mb_s"`
	DiskMBs   float64 `json:"disk_direct_mb_s,omitempty"`
	RefMBs    float64 `json:"import_ref_mb_s"`
	CLIMBs    float64 `json:"cli_file_add_mb_s,omitempty"`
	CLIRefMBs float64 `json:"cli_file_add_ref_mb_s,omitempty"`
}

// benchImportCmd times Store.AddFile (what `dweb file add` runs for each
// file, copy mode) of one file into a real store on disk (Pebble and blob
// files under --dir) against single-threaded BLAKE3 of the same file and a
// durable copy of it, in the same run.
func benchImportCmd(a *app) *cobra.Command {
	var sizeFlag, dir string
	var rounds int
	var goHash, cli bool
	cmd := &cobra.Command{
		Use:   "import",
		Short: "file import into the store (hash, outboard, durable copy) MB/s next to single-threaded BLAKE3 of the same file",
		Long: `Times Store.AddFile of a file of --size random bytes into a store on disk
(the file in the page cache, written just before), next to
'b3sum --num-threads 1' of the same file (zeebo/blake3 in this process when
b3sum is not on PATH, or with --go-hash) and a copy of the file with fsync.
It also times an O_DIRECT write of as many bytes from memory (the disk's
ceiling for an import that keeps a copy) and Store.AddFileRef of the file
(reference mode: no copy). Each round runs them in turn and deletes the blob
after each import; the figures are the medians of the rounds. With --cli
each round also times the real 'dweb file add' and 'dweb file add
--no-store-copy' of the file, each against a fresh 'dweb serve'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			size, err := bsParseSize(sizeFlag)
			if err != nil {
				return &usageError{err}
			}
			if rounds < 1 || rounds > 50 {
				return &usageError{fmt.Errorf("--rounds %d: want 1..50", rounds)}
			}
			tmp, err := os.MkdirTemp(dir, "dweb-bench-import-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			res, err := benchImport(cmd.Context(), tmp, size, rounds, goHash, cli)
			if err != nil {
				return err
			}
			format := "%d bytes: import %.0f MB/s, %s %.0f MB/s, ratio %.2f; copy+fsync %.0f MB/s, O_DIRECT disk %.0f MB/s; by reference %.0f MB/s (ratio %.2f)"
			fargs := []any{res.Size, res.ImportMBs, res.HashTool, res.HashMBs, res.Ratio, res.CopyMBs, res.DiskMBs, res.RefMBs, res.RefRatio}
			if cli {
				format += "; dweb file add %.0f MB/s (ratio %.2f), --no-store-copy %.0f MB/s (ratio %.2f)"
				fargs = append(fargs, res.CLIMBs, res.CLIRatio, res.CLIRefMBs, res.CLIRefRatio)
			}
			if err := a.printResult(res, format+"\n", fargs...); err != nil {
				return err
			}
			if !res.Verified {
				return fmt.Errorf("bench import: an import's hash differs from the baseline's")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&sizeFlag, "size", "1GiB", "file size (B, KiB, MiB, GiB, KB, MB, GB)")
	cmd.Flags().IntVar(&rounds, "rounds", 5, "rounds; the figures are their medians")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the file and the store (default: the system temp dir)")
	cmd.Flags().BoolVar(&goHash, "go-hash", false, "baseline with zeebo/blake3 in this process even when b3sum is on PATH")
	cmd.Flags().BoolVar(&cli, "cli", false, "also time the real `dweb file add`, and `dweb file add --no-store-copy`, each against a fresh `dweb serve`, each round")
	return cmd
}

func benchImport(ctx context.Context, dir string, size int64, rounds int, goHash, cli bool) (*benchImportResult, error) {
	src := filepath.Join(dir, "file")
	if err := bsWriteRandom(src, size, 7); err != nil {
		return nil, err
	}
	db, err := store.Open(filepath.Join(dir, "store"), store.Options{})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	bs, err := blobsync.OpenStore(db, filepath.Join(dir, "store", "blobs"), blobsync.StoreOptions{})
	if err != nil {
		return nil, err
	}
	hashTool := "zeebo/blake3"
	b3sum, _ := exec.LookPath("b3sum")
	if b3sum != "" && !goHash {
		out, err := exec.CommandContext(ctx, b3sum, "--version").Output()
		if err != nil {
			return nil, fmt.Errorf("b3sum --version: %w", err)
		}
		hashTool = "b3sum --num-threads 1 (" + strings.TrimSpace(string(out)) + ")"
	} else {
		b3sum = ""
	}
	res := &benchImportResult{Size: size, HashTool: hashTool, Verified: true, Cores: runtime.NumCPU()}
	var imp, hs, cp, disk, ref, clis, cliRefs, ratio, ratioCp, ratioDisk, ratioRef, ratioCLI, ratioCLIRef []float64
	for i := range rounds {
		want, hd, err := biHash(ctx, b3sum, src)
		if err != nil {
			return nil, err
		}
		cd, err := biCopy(src, filepath.Join(dir, "store", "blobs", "copy"))
		if err != nil {
			return nil, err
		}
		dd, dn, err := biDisk(filepath.Join(dir, "store", "blobs", "disk"), size)
		if err != nil {
			return nil, err
		}
		t := time.Now()
		h, n, err := bs.AddFile(ctx, src)
		id := time.Since(t)
		if err != nil {
			return nil, err
		}
		if h != want || n != size {
			res.Verified = false
		}
		if ok, err := bs.Has(h); err != nil || !ok {
			return nil, fmt.Errorf("bench import: blob %s not in the store after AddFile (%v)", h, err)
		}
		if err := bs.Delete(h); err != nil {
			return nil, err
		}
		t = time.Now()
		h, n, err = bs.AddFileRef(ctx, src)
		rd := time.Since(t)
		if err != nil {
			return nil, err
		}
		if h != want || n != size {
			res.Verified = false
		}
		if err := bs.Delete(h); err != nil {
			return nil, err
		}
		res.Hash = want.String()
		r := benchImportRound{ImportMBs: biMBs(size, id), HashMBs: biMBs(size, hd), CopyMBs: biMBs(size, cd), RefMBs: biMBs(size, rd)}
		if dn > 0 {
			r.DiskMBs = biMBs(dn, dd)
			disk = append(disk, r.DiskMBs)
			ratioDisk = append(ratioDisk, bsRound(r.ImportMBs/r.DiskMBs))
		}
		if cli {
			cd, h, _, err := biCLIAdd(ctx, filepath.Join(dir, fmt.Sprintf("node%d", i)), src)
			if err != nil {
				return nil, err
			}
			if h != want.String() {
				res.Verified = false
			}
			r.CLIMBs = biMBs(size, cd)
			clis = append(clis, r.CLIMBs)
			ratioCLI = append(ratioCLI, bsRound(r.CLIMBs/r.HashMBs))
			cd, h, kept, err := biCLIAdd(ctx, filepath.Join(dir, fmt.Sprintf("node%d-ref", i)), src, "--no-store-copy")
			if err != nil {
				return nil, err
			}
			if kept != "reference" && size > blobsync.ChunkGroupSize {
				return nil, fmt.Errorf("bench import: file add --no-store-copy kept the file as %q, want reference", kept)
			}
			if h != want.String() {
				res.Verified = false
			}
			r.CLIRefMBs = biMBs(size, cd)
			cliRefs = append(cliRefs, r.CLIRefMBs)
			ratioCLIRef = append(ratioCLIRef, bsRound(r.CLIRefMBs/r.HashMBs))
		}
		res.Rounds = append(res.Rounds, r)
		imp, hs, cp, ref = append(imp, r.ImportMBs), append(hs, r.HashMBs), append(cp, r.CopyMBs), append(ref, r.RefMBs)
		ratio = append(ratio, bsRound(r.ImportMBs/r.HashMBs))
		ratioCp = append(ratioCp, bsRound(r.ImportMBs/r.CopyMBs))
		ratioRef = append(ratioRef, bsRound(r.RefMBs/r.HashMBs))
	}
	res.ImportMBs, res.HashMBs, res.CopyMBs, res.RefMBs = btMedian(imp), btMedian(hs), btMedian(cp), btMedian(ref)
	res.Ratio, res.RatioToCopy, res.RefRatio = btMedian(ratio), btMedian(ratioCp), btMedian(ratioRef)
	if len(disk) > 0 {
		res.DiskMBs, res.RatioToDisk = btMedian(disk), btMedian(ratioDisk)
	}
	if len(clis) > 0 {
		res.CLIMBs, res.CLIRatio = btMedian(clis), btMedian(ratioCLI)
		res.CLIRefMBs, res.CLIRefRatio = btMedian(cliRefs), btMedian(ratioCLIRef)
	}
	return res, nil
}

// biCLIAdd starts `dweb serve` on a fresh data dir, creates a group and
// times `dweb file add [flags] GROUP src` from the CLI's start to its
// exit. It returns the time, the hash the CLI printed and how the daemon
// said it kept the file ("copy", "reference": core.FileInfo.Store); the
// daemon is stopped and its data dir removed after.
func biCLIAdd(ctx context.Context, data, src string, flags ...string) (time.Duration, string, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, "", "", err
	}
	defer os.RemoveAll(data)
	defer os.Remove(data + ".log")
	d, err := btStartDaemon(ctx, exe, data, nil)
	if err != nil {
		return 0, "", "", err
	}
	defer d.stop()
	out, err := d.cli(ctx, "group", "create", "bench")
	if err != nil {
		return 0, "", "", err
	}
	var g struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(out, &g); err != nil || g.Key == "" {
		return 0, "", "", fmt.Errorf("bench import: group create said %q (%v)", out, err)
	}
	t := time.Now()
	out, err = d.cli(ctx, append(append([]string{"file", "add"}, flags...), g.Key, src)...)
	dt := time.Since(t)
	if err != nil {
		return 0, "", "", err
	}
	var fs []struct {
		Hash  string `json:"hash"`
		Store string `json:"store"`
	}
	if err := json.Unmarshal(out, &fs); err != nil || len(fs) != 1 {
		return 0, "", "", fmt.Errorf("bench import: file add said %q (%v)", out, err)
	}
	return dt, fs[0].Hash, fs[0].Store, nil
}

// biHash hashes the file at path with `b3sum --num-threads 1` (b3sum not
// empty) or with zeebo/blake3 in this process, and returns the hash and
// the time it took.
func biHash(ctx context.Context, b3sum, path string) (blobsync.Hash, time.Duration, error) {
	if b3sum != "" {
		var out bytes.Buffer
		c := exec.CommandContext(ctx, b3sum, "--num-threads", "1", "--no-names", path)
		c.Stdout = &out
		c.Stderr = os.Stderr
		t := time.Now()
		err := c.Run()
		d := time.Since(t)
		if err != nil {
			return blobsync.Hash{}, 0, fmt.Errorf("b3sum: %w", err)
		}
		h, err := blobsync.ParseHash(strings.TrimSpace(out.String()))
		return h, d, err
	}
	f, err := os.Open(path)
	if err != nil {
		return blobsync.Hash{}, 0, err
	}
	defer f.Close()
	t := time.Now()
	hs := blake3.New()
	if _, err := io.CopyBuffer(hs, f, make([]byte, 256<<10)); err != nil {
		return blobsync.Hash{}, 0, err
	}
	var h blobsync.Hash
	hs.Sum(h[:0])
	return h, time.Since(t), nil
}

// biCopy copies src to a new file dst through a 1 MiB buffer, fsyncs it,
// removes it and returns the time the copy and the fsync took.
func biCopy(src, dst string) (time.Duration, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	defer os.Remove(dst)
	t := time.Now()
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	for err == nil {
		var n int
		n, err = io.ReadFull(in, buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return time.Since(t), err
}

func biMBs(size int64, d time.Duration) float64 { return bsRound(float64(size) / 1e6 / d.Seconds()) }
