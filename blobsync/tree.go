package blobsync

import (
	"encoding/binary"
	"math/bits"

	"lukechampine.com/blake3/guts"
)

// Tree geometry. A blob is hashed as the standard BLAKE3 tree of 1 KiB
// chunks; dweb (like Iroh) stores and sends that tree only down to chunk
// groups of 2^ChunkGroupLog chunks, so there is one 64-byte parent node per
// 16 KiB of data.
const (
	ChunkSize      = 1024                       // bytes per BLAKE3 chunk
	ChunkGroupLog  = 4                          // log2 of chunks per group
	ChunkGroupSize = ChunkSize << ChunkGroupLog // 16 KiB: the unit of verification
	MaxBlobSize    = int64(1) << 40             // 1 TiB: the largest blob the store and the protocol accept
	parentSize     = 64                         // a parent node: left CV || right CV
	outboardHeader = 8                          // little-endian uint64 blob size
	ioBufSize      = 256 << 10                  // buffered I/O on files and streams
	inlineMax      = ChunkGroupSize             // blobs up to this size live inside Pebble
	// inlineOutboardMax: a complete blob whose parents take at most this
	// many bytes (256 parents: blobs up to 257 groups, about 4 MiB) keeps
	// them in its Pebble entry instead of an .obao file, as Iroh keeps
	// outboards up to 16 KiB inline. Storing such a blob then creates,
	// fsyncs and renames one file instead of two.
	inlineOutboardMax = 16 << 10
)

// inlineOutboard reports whether a complete blob of size bytes keeps its
// outboard in its entry.
func inlineOutboard(size uint64) bool {
	return size > inlineMax && outboardSize(size)-outboardHeader <= inlineOutboardMax
}

// guts.MaxSIMD chunks are compressed in one CompressBuffer call; the group
// must be exactly that for verifyGroup's single call to be a whole subtree.
var _ [guts.MaxSIMD - (1 << ChunkGroupLog)]struct{}
var _ [(1 << ChunkGroupLog) - guts.MaxSIMD]struct{}

// numGroups returns the number of chunk groups in a blob of size bytes: at
// least 1 (the empty blob is one empty group).
func numGroups(size uint64) uint64 {
	if size == 0 {
		return 1
	}
	return (size + ChunkGroupSize - 1) / ChunkGroupSize
}

// outboardSize returns the size of the outboard file of a blob: 0 for blobs
// of one group, else the 8-byte header and one parent per group but one.
func outboardSize(size uint64) uint64 {
	if size <= ChunkGroupSize {
		return 0
	}
	return outboardHeader + parentSize*(numGroups(size)-1)
}

// encodedSize returns the length of the whole-blob stream: the blob's bytes
// with its parent nodes interleaved (bao combined encoding without its
// 8-byte length prefix).
func encodedSize(size uint64) uint64 {
	return size + parentSize*(numGroups(size)-1)
}

// leftSize returns the size of the left subtree of a node covering n > one
// group bytes: the largest power of two strictly below n (BLAKE3 §2.1; it is
// a whole number of groups since n > ChunkGroupSize).
func leftSize(n uint64) uint64 {
	return 1 << (bits.Len64(n-1) - 1)
}

func bytesToCV(b []byte) (cv [8]uint32) {
	_ = b[31]
	for i := range cv {
		cv[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return cv
}

func cvToBytes(dst []byte, cv *[8]uint32) {
	_ = dst[31]
	for i, w := range cv {
		binary.LittleEndian.PutUint32(dst[4*i:], w)
	}
}

// groupCV returns the chaining value of the chunk group buf[:n] that starts
// at chunk index counter (group index * 16). root sets BLAKE3's ROOT flag on
// the group's top node, for a blob that is a single group; then the result is
// the blob's hash. One guts.CompressBuffer call does the whole group with
// SIMD, as bao's compressGroup does for its first 16 chunks.
func groupCV(buf *[ChunkGroupSize]byte, n int, counter uint64, root bool) [8]uint32 {
	node := guts.CompressBuffer(buf, n, &guts.IV, counter, 0)
	if root {
		node.Flags |= guts.FlagRoot
	}
	return guts.ChainingValue(node)
}

// parentCV returns the chaining value of the parent node p (left CV || right
// CV), with the ROOT flag if it is the top of the tree.
func parentCV(p []byte, root bool) [8]uint32 {
	var flags uint32
	if root {
		flags = guts.FlagRoot
	}
	return guts.ChainingValue(guts.ParentNode(bytesToCV(p[:32]), bytesToCV(p[32:64]), &guts.IV, flags))
}
