// Package crypto turns plaintext HLS segments into ciphertext on the fly,
// at any offset, byte for byte what encrypting the whole segment gives.
//
// # Parts
//
// An output File is a concatenation of Parts. A Part is a byte range of a
// source object, read through a RangeSource (one ranged GET, or a local
// file read), and either copied clear or encrypted as one unit:
// AES-128-CBC or SM4-CBC with its own PKCS#7 padding, or AES-128-CTR. An
// HLS segment is one Part; a single-file EXT-X-BYTERANGE output is one
// Part per range; an init section or preview segment is a clear Part.
// Sizes are known before a byte is encrypted (Algorithm.EncryptedSize).
//
// A Part may instead carry a Transform (Common Encryption, package cenc):
// its plaintext keeps its size and only some byte runs (sample data) are
// encrypted. A cursor starts the Transform's stream at the first byte it
// produces of the part and feeds it every chunk in order, so the
// Transform keeps its own chain state and may read the source for what
// lies before its start.
//
// # Random access and checkpoints
//
// CTR seeks in O(1): the counter for offset o is IV + o/16. CBC is a
// chain, so the File remembers the chain value (the previous ciphertext
// block, 16 bytes) every Tuning.CheckpointEvery (64 KiB) of a part as any
// of its readers encrypts past that point. A read starts at the nearest
// checkpoint at or before it and so re-encrypts at most that much. The first read deep into a part no
// reader has been through yet must encrypt the whole prefix once: that is
// inherent to CBC. Readers that land there at the same time share that
// work: one walks the chain, recording checkpoints, while the others wait
// for it and then start from the nearest one. Checkpoints cost 16 bytes
// per 64 KiB of plaintext.
//
// # Sequential reads and their bound
//
// A Reader (one per open file handle) keeps the stream it last read from:
// the open source window and the CBC chain. A read that continues it (at
// its end, or a little past it) costs no new request and no extra
// encryption. Plaintext comes through a windowReader (window.go): after a
// seek the first window covers just the request (a random read fetches
// no more than it needs), each next one is twice the last but at least
// Tuning.FirstWindow, up to Tuning.MaxWindow, all capped at the end of
// the part; a stream found sequential (a read exactly at its end, or the
// first read of a file at offset 0) opens MaxWindow windows from the
// start. Then a producer goroutine takes the stream over and fetches and
// encrypts ahead, across part boundaries, while the reader copies out
// what is ready. Its memory is bounded: one chunk (Tuning.ChunkSize)
// being made and one queued, plus the chunks the Reader holds for kernel
// requests that arrive out of order: a chunk is let go once every byte of
// it has been served, so in order that is the newest one, and never more
// than Tuning.MaxHeldChunks. A request that arrives late, a little behind
// the stream after its chunk has gone, is read aside (its own small read)
// and the stream goes on. A seek or Close stops the producer.
//
// All offset arithmetic (blocks, padding, which part holds an offset,
// checkpoint intervals, CTR counters) is in offsets.go, tabled by
// offsets_test.go; every size and timing knob is a field of
// tuning.Tuning (SetTuning).
//
// # Warm streams and CBC lanes
//
// The segments after one being read in sequence are warmed (warm.go):
// streamed and encrypted ahead, into a budget (Tuning.WarmBudget) shared
// by all warm streams, for the reader that opens them next. CBC chains of
// different streams are encrypted side by side, up to four at once, by
// one lane engine (lanes_amd64.go): a chain is serial, but four
// interleaved AES-NI chains cost a core about what one does. A warm
// stream's chunks are made ahead of their reader, so the engine holds
// them (Tuning.LaneGateWait at most) until they have company: another
// chunk being encrypted, or four of them; a reader that opens the stream
// ends the wait (from then on its chunks are encrypted as made).
//
// # Replies without a copy
//
// ReadData hands out ciphertext as slices of the chunk buffers themselves
// (the FUSE layer writes them to the kernel with one writev). Buffers are
// reference counted, so a chunk let go while a reply is still being
// written is recycled only when that reply is done. They live outside
// the Go heap, all of them together within Tuning.BufferMemory; when it
// is reached a chunk waits for a buffer, and buffers held without being
// needed are taken back (buffers.go).
package crypto
