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
// # Random access and checkpoints
//
// CTR seeks in O(1): the counter for offset o is IV + o/16. CBC is a
// chain, so the File remembers the chain value (the previous ciphertext
// block, 16 bytes) every 64 KiB of a part as any of its readers encrypts
// past that point. A read starts at the nearest checkpoint at or before it
// and so re-encrypts at most 64 KiB. The first read deep into a part no
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
// encryption. Source windows grow: the first is max(request, 1 MiB), each
// next one twice the last, up to 16 MiB, all capped at the end of the
// part. When a read starts exactly where the last one ended, a producer
// goroutine takes the stream over and fetches and encrypts ahead, across
// part boundaries, while the reader copies out what is ready. Its
// memory is bounded: one 512 KiB chunk being made and one queued, plus the
// two the Reader keeps for slightly out-of-order kernel reads: 2 MiB per
// open file. A seek or Close stops the producer.
package crypto
