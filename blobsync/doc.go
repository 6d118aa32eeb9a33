// Package blobsync stores blobs (bytes named by their BLAKE3-256 hash, the
// hash b3sum prints) and moves them between nodes, verified, from every
// peer that holds them.
//
// A blob's outboard is its BLAKE3 tree down to 16 KiB chunk groups (as
// Iroh's, after the Bao design); a receiver checks every group against the
// tree before it writes a byte, so a lying provider is caught within 16 KiB
// and nothing unverified is stored or served. docs/protocol.md gives the
// wire format; the files of the package by concern:
//
//   - The store: store.go (Store, entries in Pebble, data files beside it),
//     ref.go (blobs held by reference to an app's file), pack.go and
//     compact.go (small blobs and chunks packed in shared files), commit.go
//     (batched commits), partfile.go and partial.go (partial downloads and
//     the crash-ordering rule), gc.go, usage.go.
//   - The tree: tree.go (geometry), treehash.go (hashing in parallel),
//     encode.go (outboards and the combined stream), verify.go and sink.go
//     (the streaming verifier and its write buffers).
//   - The wire: wire.go (requests, ranges), stream.go, serve.go (the
//     provider's side), client.go and fetch.go (one peer), streampool.go,
//     limits.go.
//   - Downloads from many providers: download.go (API, options, progress),
//     download_sched.go (the scheduler that hands chunks of work to
//     providers, end game included), download_session.go (one provider's
//     session: streams, retries, bans), download_collection.go and
//     children.go (collections, small blobs in batches), rangeset.go,
//     progress.go, mirror.go (a download written to a file as it verifies).
//   - Collections and files: collection.go, collection_diff.go,
//     collection_history.go, files.go (an entry's bytes, whole or chunked).
//   - Chunked files: chunker.go (content-defined cuts), chunklist.go,
//     chunkfetch.go, chunkdelta.go, delta.go, listdelta.go, chunkexport.go,
//     chunkref.go.
//   - Out of the store: export.go, move.go (a get that moves the store's
//     copy out), directwrite.go and directio_*.go (O_DIRECT writes).
//
// Errors callers test with errors.Is and errors.As: ErrNotFound,
// ErrCorrupt, ErrProtocol and *LimitError (errors.go), ErrNoProviders
// (download.go).
package blobsync
