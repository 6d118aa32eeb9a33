package blobsync

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A chunked file (chunker.go) is stored as its chunks, each its own blob,
// and a chunk list: a blob naming the chunks in file order. Its encoding
// is fixed-width binary, so its size says its count before anything is
// allocated:
//
//	magic   4 bytes  "DWCL"
//	version 1 byte   ChunkListVersion
//	count   4 bytes  big-endian number of chunks, 1..MaxChunks
//	count times:
//	  hash  32 bytes BLAKE3-256 of the chunk's bytes
//	  size  4 bytes  big-endian chunk size in bytes, 1..ChunkMax
//
// The list does not repeat the whole file's hash: the collection entry
// that names the list (Entry.Chunks) carries it (Entry.Hash), and
// assembling the file checks it (ExportChunked).
const (
	ChunkListVersion = 1
	// MaxChunks bounds a list: a file of MaxBlobSize bytes cut into chunks
	// of at least ChunkMin bytes, the most the chunker makes.
	MaxChunks = 1 << 22 // MaxBlobSize / ChunkMin
	// MaxChunkListSize is the largest encoded list (about 144 MiB, for a
	// 1 TiB file of minimum-size chunks; a 1 GiB file of random data takes
	// about 30 KiB).
	MaxChunkListSize = chunkListHeader + MaxChunks*chunkRefSize

	chunkListHeader = 9
	chunkRefSize    = 36
)

var chunkListMagic = [4]byte{'D', 'W', 'C', 'L'}

// ErrBadChunkList wraps every reason DecodeChunkList or Encode rejects a
// chunk list.
var ErrBadChunkList = errors.New("blobsync: bad chunk list")

// ChunkRef is one chunk of a chunked file: the hash of its blob and its
// size in bytes.
type ChunkRef struct {
	Hash Hash
	Size int64
}

// ChunkList is a chunked file's chunks in file order; their bytes,
// concatenated, are the file.
type ChunkList struct {
	Chunks []ChunkRef
}

// Size returns the file's size in bytes: the sum of the chunk sizes.
func (l *ChunkList) Size() int64 {
	var n int64
	for _, c := range l.Chunks {
		n += c.Size
	}
	return n
}

// Encode returns the list's encoding (see the format above). It fails
// with ErrBadChunkList for an empty list, more than MaxChunks chunks, a
// chunk size outside 1..ChunkMax, or a total above MaxBlobSize.
func (l *ChunkList) Encode() ([]byte, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	b := make([]byte, chunkListHeader, chunkListHeader+len(l.Chunks)*chunkRefSize)
	copy(b, chunkListMagic[:])
	b[4] = ChunkListVersion
	binary.BigEndian.PutUint32(b[5:], uint32(len(l.Chunks)))
	for _, c := range l.Chunks {
		b = append(b, c.Hash[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(c.Size))
	}
	return b, nil
}

// DecodeChunkList parses an encoded chunk list. The input must be exactly
// the header and count entries, with the magic "DWCL", version
// ChunkListVersion, 1..MaxChunks chunks of 1..ChunkMax bytes each and a
// total of at most MaxBlobSize bytes; its length is checked before the
// list is allocated. Errors wrap ErrBadChunkList (and a *LimitError for
// an input over MaxChunkListSize) and name the entry at fault.
func DecodeChunkList(b []byte) (*ChunkList, error) {
	if len(b) > MaxChunkListSize {
		return nil, fmt.Errorf("%w: %w", ErrBadChunkList, &LimitError{What: "encoded chunk list", Limit: MaxChunkListSize, Got: int64(len(b))})
	}
	if len(b) < chunkListHeader {
		return nil, fmt.Errorf("%w: %d bytes, shorter than its %d-byte header", ErrBadChunkList, len(b), chunkListHeader)
	}
	if [4]byte(b[:4]) != chunkListMagic {
		return nil, fmt.Errorf("%w: magic %q, want %q", ErrBadChunkList, b[:4], chunkListMagic[:])
	}
	if b[4] != ChunkListVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads version %d", ErrBadChunkList, b[4], ChunkListVersion)
	}
	n := int64(binary.BigEndian.Uint32(b[5:]))
	if want := chunkListHeader + n*chunkRefSize; int64(len(b)) != want {
		return nil, fmt.Errorf("%w: %d bytes for %d chunks, want %d", ErrBadChunkList, len(b), n, want)
	}
	l := &ChunkList{Chunks: make([]ChunkRef, n)}
	for i := range l.Chunks {
		e := b[chunkListHeader+i*chunkRefSize:]
		copy(l.Chunks[i].Hash[:], e[:32])
		l.Chunks[i].Size = int64(binary.BigEndian.Uint32(e[32:]))
	}
	if err := l.validate(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *ChunkList) validate() error {
	switch n := len(l.Chunks); {
	case n == 0:
		return fmt.Errorf("%w: no chunks", ErrBadChunkList)
	case n > MaxChunks:
		return fmt.Errorf("%w: %w", ErrBadChunkList, &LimitError{What: "chunk count", Limit: MaxChunks, Got: int64(n)})
	}
	var total int64
	for i, c := range l.Chunks {
		if c.Size < 1 || c.Size > ChunkMax {
			return fmt.Errorf("%w: chunk %d (%s): size %d out of range [1, %d]", ErrBadChunkList, i, c.Hash, c.Size, ChunkMax)
		}
		total += c.Size
	}
	if total > MaxBlobSize {
		return fmt.Errorf("%w: %w", ErrBadChunkList, &LimitError{What: "chunked file", Limit: MaxBlobSize, Got: total})
	}
	return nil
}
