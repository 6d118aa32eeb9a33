package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/spf13/cobra"
	"github.com/zeebo/blake3"
)

func init() { benchCommands = append(benchCommands, benchVerifyCmd) }

// benchVerifyResult is the JSON that `dweb bench verify` prints.
type benchVerifyResult struct {
	Bytes        int64   `json:"bytes"`
	HashMBs      float64 `json:"hash_mb_s"`   // zeebo/blake3 over the data file
	VerifyMBs    float64 `json:"verify_mb_s"` // blobsync's verifier over the stream file
	Ratio        float64 `json:"ratio"`       // verify_mb_s / hash_mb_s
	Rounds       int     `json:"rounds"`
	StreamBytes  int64   `json:"stream_bytes"`
	HashString   string  `json:"hash"`
	VerifiedHash bool    `json:"verified"`
}

// benchVerifyCmd measures the receive-side streaming verifier against plain
// BLAKE3 hashing of the same bytes, in the same run. Both read from files in
// a temp directory (the page cache, after a first write), through the same
// 256 KiB buffered reads, so memory stays bounded whatever --size is: the
// data file, and the stream file (data with its parents interleaved). Each
// is measured --rounds times; the best round counts. MB/s are 10^6 bytes of
// blob data per second.
func benchVerifyCmd(a *app) *cobra.Command {
	var sizeFlag, dir string
	var rounds int
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "streaming BLAKE3 verifier MB/s next to plain BLAKE3 hashing of the same bytes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			size, err := bsParseSize(sizeFlag)
			if err != nil {
				return &usageError{err}
			}
			if rounds < 1 || rounds > 100 {
				return &usageError{fmt.Errorf("--rounds %d: want 1..100", rounds)}
			}
			tmp, err := os.MkdirTemp(dir, "dweb-bench-verify-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			res, err := benchVerify(tmp, size, rounds)
			if err != nil {
				return err
			}
			return a.printResult(res, "%d bytes: hash %.0f MB/s, verify %.0f MB/s, ratio %.2f\n", res.Bytes, res.HashMBs, res.VerifyMBs, res.Ratio)
		},
	}
	cmd.Flags().StringVar(&sizeFlag, "size", "1GiB", "blob size (B, KiB, MiB, GiB, KB, MB, GB)")
	cmd.Flags().IntVar(&rounds, "rounds", 3, "measure each side this many times; the best counts")
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the temp files (default: the system temp dir)")
	return cmd
}

func benchVerify(dir string, size int64, rounds int) (*benchVerifyResult, error) {
	dataPath := filepath.Join(dir, "data")
	streamPath := filepath.Join(dir, "stream")
	if err := bsWriteRandom(dataPath, size, 1); err != nil {
		return nil, err
	}
	df, err := os.Open(dataPath)
	if err != nil {
		return nil, err
	}
	defer df.Close()
	h, ob, err := blobsync.ComputeOutboard(bufio.NewReaderSize(df, 256<<10), size)
	if err != nil {
		return nil, err
	}
	sf, err := os.Create(streamPath)
	if err != nil {
		return nil, err
	}
	defer sf.Close()
	if _, err := df.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(sf, 256<<10)
	if err := blobsync.WriteStream(bw, df, ob, size); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	fi, err := sf.Stat()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 256<<10)
	var bestHash, bestVerify time.Duration
	for range rounds {
		if _, err := df.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		t := time.Now()
		hs := blake3.New()
		if _, err := io.CopyBuffer(hs, df, buf); err != nil {
			return nil, err
		}
		var got blobsync.Hash
		hs.Sum(got[:0])
		d := time.Since(t)
		if got != h {
			return nil, fmt.Errorf("bench verify: hash %s, outboard root %s", got, h)
		}
		if bestHash == 0 || d < bestHash {
			bestHash = d
		}

		if _, err := sf.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		t = time.Now()
		if err := blobsync.VerifyStream(bufio.NewReaderSize(sf, 256<<10), h, size, io.Discard); err != nil {
			return nil, err
		}
		d = time.Since(t)
		if bestVerify == 0 || d < bestVerify {
			bestVerify = d
		}
	}
	r := &benchVerifyResult{
		Bytes: size, Rounds: rounds, StreamBytes: fi.Size(), HashString: h.String(), VerifiedHash: true,
		HashMBs:   float64(size) / 1e6 / bestHash.Seconds(),
		VerifyMBs: float64(size) / 1e6 / bestVerify.Seconds(),
	}
	r.Ratio = bsRound(r.VerifyMBs / r.HashMBs)
	r.HashMBs, r.VerifyMBs = bsRound(r.HashMBs), bsRound(r.VerifyMBs)
	return r, nil
}

// bsWriteRandom writes size deterministic pseudo-random bytes (ChaCha8,
// seeded by seed) to a new file at path, 1 MiB at a time.
func bsWriteRandom(path string, size int64, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	rng := rand.NewChaCha8(s)
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := min(left, int64(len(buf)))
		rng.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	return f.Close()
}

var bsSizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)?$`)

// bsParseSize parses a byte count such as "1GiB", "512MiB", "25MB" or
// "4096": binary (KiB, MiB, GiB, TiB) and decimal (KB, MB, GB, TB) units.
func bsParseSize(s string) (int64, error) {
	m := bsSizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (B, KiB, MiB, GiB, KB, MB, GB)", s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	mult := map[string]float64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[2]]
	n := v * mult
	if n < 1 || n > float64(blobsync.MaxBlobSize) {
		return 0, fmt.Errorf("size %q: want 1 byte to 1 TiB", s)
	}
	return int64(n), nil
}

func bsRound(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
