package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// localRow reads the generated files: disk when cold, the page cache warm.
func (b *bench) localRow() error {
	r := &row{name: "local file (disk / page cache)", note: "the warm-read target's reference", paths: b.media.localPaths()}
	if err := b.seqRows(r, func() (int64, error) { return readFiles(r.paths) }); err != nil {
		return err
	}
	b.report.seq = append(b.report.seq, r)
	return b.smallPageLocalRow()
}

// smallPageTwin names the row that reads the local files from a page cache
// made of 4 KiB folios, the only folio size a FUSE file's page cache uses
// on the kernels we run (docs/warm-reads.md): ext4 fills its page cache
// with large folios, and copying out of those is cheaper per byte, so the
// local row's warm figure holds a kernel advantage no FUSE daemon can
// reach. This row is the same reader on the same files with that
// advantage taken away (its cold pass reads with POSIX_FADV_RANDOM, which
// makes readahead allocate single pages); its warm figure is the ceiling
// of a FUSE page cache, for reading the warm rows. Not a target's
// reference: the targets stay against the real local page cache.
const smallPageTwin = "4 KiB-page twin of the local file"

func (b *bench) smallPageLocalRow() error {
	paths := b.media.localPaths()
	r := &row{name: smallPageTwin, note: "warm: the local files from a page cache of 4 KiB folios, like FUSE's (docs/warm-reads.md)", paths: paths}
	err := b.seqRowsPass(r, func(cold bool) (int64, error) {
		if cold {
			return readFilesAdvised(paths, unix.FADV_RANDOM)
		}
		return readFiles(paths)
	})
	if err != nil {
		return err
	}
	b.report.seq = append(b.report.seq, r)
	return nil
}

// readFilesAdvised is readFiles with posix_fadvise(advice) on each file
// before it is read.
func readFilesAdvised(paths []string, advice int) (int64, error) {
	buf := make([]byte, readBuf)
	var total int64
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return total, err
		}
		if err := unix.Fadvise(int(f.Fd()), 0, 0, advice); err != nil {
			f.Close()
			return total, fmt.Errorf("posix_fadvise %s: %w", p, err)
		}
		n, err := drain(f, buf)
		f.Close()
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// rawRows: the ceiling every ratio refers to - whole-object GETs of the
// same objects, one request per segment, same client library as mpcfs.
func (b *bench) rawRows() error {
	if err := b.rawSeqRow(); err != nil {
		return err
	}
	keys := b.mediaKeys()

	rr := &row{name: rawName, note: "one ranged GET per read"}
	sizes := make([]int64, len(b.media.segs))
	for i, s := range b.media.segs {
		st, err := os.Stat(filepath.Join(b.media.dir, s))
		if err != nil {
			return err
		}
		sizes[i] = st.Size()
	}
	for i := range b.cfg.Runs {
		b.dropCaches()
		rps, err := randomReads(int64(i+1), b.cfg.RandDur, sizes, b.s3ReadAt(mediaBucket, keys))
		if err != nil {
			return fmt.Errorf("raw random reads: %w", err)
		}
		rr.cold = append(rr.cold, rps)
	}
	b.report.random = append(b.report.random, rr)

	cr := &row{name: rawName}
	for range b.cfg.Runs {
		b.dropCaches()
		mbs, err := concurrent(b.cfg.Readers, len(keys), func(i int, buf []byte) (int64, error) { return b.getS3(mediaBucket, keys[i], buf) })
		if err != nil {
			return fmt.Errorf("raw concurrent GETs: %w", err)
		}
		cr.cold = append(cr.cold, mbs)
	}
	b.report.conc = append(b.report.conc, cr)
	fmt.Fprintf(os.Stderr, "  %-34s random %8.0f reads/s, %d readers %8.0f MB/s\n", rawName, median(rr.cold), b.cfg.Readers, median(cr.cold))
	return nil
}

// rawSeqRow is the sequential raw GET of every segment: the reference of
// the sequential rows.
func (b *bench) rawSeqRow() error {
	keys := b.mediaKeys()
	r := &row{name: rawName, note: "the ceiling; in-process client, MinIO on 127.0.0.1"}
	if err := b.seqRows(r, func() (int64, error) { return b.readS3(mediaBucket, keys) }); err != nil {
		return err
	}
	b.report.seq = append(b.report.seq, r)
	return nil
}

// mediaKeys are the segments' object keys.
func (b *bench) mediaKeys() []string {
	keys := make([]string, len(b.media.segs))
	for i, s := range b.media.segs {
		keys[i] = mediaPrefix + s
	}
	return keys
}

const rawName = "raw S3 GET (same objects)"

// skip records a peer row that could not run, and why.
func (b *bench) skip(name, why string) {
	fmt.Fprintf(os.Stderr, "  %-34s skipped: %s\n", name, why)
	b.report.seq = append(b.report.seq, &row{name: name, skipped: true, note: "skipped: " + why})
}

// peerMount measures a FUSE daemon started with args, reading
// MOUNT/sub/<segments>, and stops it.
func (b *bench) peerMount(r *row, env []string, dir, sub string, args ...string) error {
	p, err := b.start(strings.Fields(r.name)[0], env, args...)
	if err != nil {
		return err
	}
	defer b.stopMount(p, dir)
	r.daemon = p
	if err := waitMounted(p, dir, filepath.Join(sub, b.media.segs[0])); err != nil {
		return err
	}
	paths := joinAll(filepath.Join(dir, sub), b.media.segs)
	if err := b.seqRows(r, func() (int64, error) { return readFiles(paths) }); err != nil {
		return err
	}
	r.rss = p.hwmMB()
	b.report.seq = append(b.report.seq, r)
	return nil
}

func (b *bench) s3fsRow() error {
	const name = "s3fs mount"
	if !have("s3fs", "s3fs") {
		b.skip(name, "s3fs not installed")
		return nil
	}
	dir, err := b.mountDir("mnt-s3fs")
	if err != nil {
		return err
	}
	args, err := b.s3fsArgs(dir)
	if err != nil {
		return err
	}
	r := &row{name: name, note: "default options, plaintext"}
	return b.peerMount(r, nil, dir, strings.TrimSuffix(mediaPrefix, "/"), args...)
}

// s3fsArgs is the s3fs command line (default options, read-only) for a
// mount at dir; the credentials are in a 0600 file.
func (b *bench) s3fsArgs(dir string) ([]string, error) { return b.s3fsBucketArgs(dir, mediaBucket) }

// s3fsBucketArgs is s3fsArgs for another bucket.
func (b *bench) s3fsBucketArgs(dir, bucket string) ([]string, error) {
	pw, err := b.writeSecret("s3fs.passwd", []byte(b.ak+":"+b.sk+"\n"))
	if err != nil {
		return nil, err
	}
	return []string{"s3fs", bucket, dir, "-f",
		"-o", "url=" + b.ep, "-o", "use_path_request_style", "-o", "passwd_file=" + pw, "-o", "ro"}, nil
}

// mountS3fs mounts s3fs at a new mount point and waits for the media.
func (b *bench) mountS3fs(name string) (*proc, string, error) {
	return b.mountS3fsBucket(name, mediaBucket, filepath.Join(strings.TrimSuffix(mediaPrefix, "/"), b.media.segs[0]))
}

// mountS3fsBucket mounts s3fs over bucket and waits for the file probe.
func (b *bench) mountS3fsBucket(name, bucket, probe string) (*proc, string, error) {
	dir, err := b.mountDir(name)
	if err != nil {
		return nil, "", err
	}
	args, err := b.s3fsBucketArgs(dir, bucket)
	if err != nil {
		return nil, "", err
	}
	p, err := b.start(name, nil, args...)
	if err != nil {
		return nil, "", err
	}
	if err := waitMounted(p, dir, probe); err != nil {
		b.stopMount(p, dir)
		return nil, "", err
	}
	return p, dir, nil
}

// rcloneRow: the user's alternative for "encrypted at rest, plaintext on
// read": an rclone crypt remote over the same MinIO, mounted. The crypt
// copy is uploaded (untimed) first. Config is in the environment only.
func (b *bench) rcloneRow() error {
	const name = "rclone crypt mount"
	if !have("rclone", "rclone") {
		b.skip(name, "rclone not installed")
		return nil
	}
	env, err := b.rcloneEnv()
	if err != nil {
		return err
	}
	cp := exec.Command("rclone", "copy", "--include", "seg_*.ts", b.media.dir, "bcrypt:vod")
	cp.Env = append(os.Environ(), env...)
	if out, err := cp.CombinedOutput(); err != nil {
		return fmt.Errorf("rclone copy to the crypt remote: %v: %s", err, out)
	}
	dir, err := b.mountDir("mnt-rclone")
	if err != nil {
		return err
	}
	r := &row{name: name, note: "default options (no VFS cache); decrypts"}
	return b.peerMount(r, env, dir, "", "rclone", "mount", "--read-only", "bcrypt:vod", dir)
}

func (b *bench) rcloneEnv() ([]string, error) {
	cfg, err := b.writeSecret("rclone.conf", nil)
	if err != nil {
		return nil, err
	}
	ob := exec.Command("rclone", "obscure", "-")
	ob.Stdin = strings.NewReader(randHex(16))
	out, err := ob.Output()
	if err != nil {
		return nil, fmt.Errorf("rclone obscure: %v", err)
	}
	// AWS_CA_BUNDLE (set on some machines) makes rclone's S3 backend fail
	// to start even over plain http; it is not needed on 127.0.0.1.
	return []string{"RCLONE_CONFIG=" + cfg, "AWS_CA_BUNDLE=",
		"RCLONE_CONFIG_BMINIO_TYPE=s3", "RCLONE_CONFIG_BMINIO_PROVIDER=Minio",
		"RCLONE_CONFIG_BMINIO_ACCESS_KEY_ID=" + b.ak, "RCLONE_CONFIG_BMINIO_SECRET_ACCESS_KEY=" + b.sk,
		"RCLONE_CONFIG_BMINIO_ENDPOINT=" + b.ep, "RCLONE_CONFIG_BMINIO_REGION=us-east-1",
		"RCLONE_CONFIG_BCRYPT_TYPE=crypt", "RCLONE_CONFIG_BCRYPT_REMOTE=bminio:" + cryptBucket,
		"RCLONE_CONFIG_BCRYPT_PASSWORD=" + strings.TrimSpace(string(out))}, nil
}

// gocryptfsRow: gocryptfs -reverse presents an encrypted view of a local
// folder (hard links to the generated media; a copy if links fail).
func (b *bench) gocryptfsRow() error {
	const name = "gocryptfs -reverse (local)"
	if !have("gocryptfs", "gocryptfs") {
		b.skip(name, "gocryptfs not installed")
		return nil
	}
	src := filepath.Join(b.tmp, "gocryptfs-src")
	if err := linkOrCopy(b.media.localPaths(), src); err != nil {
		return err
	}
	pf, err := b.writeSecret("gocryptfs.pass", []byte(randHex(16)+"\n"))
	if err != nil {
		return err
	}
	init := exec.Command("gocryptfs", "-init", "-reverse", "-plaintextnames", "-scryptn", "10", "-q", "-passfile", pf, src)
	if out, err := init.CombinedOutput(); err != nil {
		return fmt.Errorf("gocryptfs -init: %v: %s", err, out)
	}
	dir, err := b.mountDir("mnt-gocryptfs")
	if err != nil {
		return err
	}
	r := &row{name: name, note: "local disk, not S3; -plaintextnames; encrypts"}
	return b.peerMount(r, nil, dir, "", "gocryptfs", "-reverse", "-fg", "-q", "-passfile", pf, src, dir)
}

func linkOrCopy(paths []string, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, p := range paths {
		to := filepath.Join(dst, filepath.Base(p))
		if os.Link(p, to) == nil {
			continue
		}
		if err := copyFile(p, to); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// opensslRow: `openssl enc -aes-128-cbc` once per local segment, output
// discarded. The key is derived from a 0600 pass file (never argv).
func (b *bench) opensslRow() error {
	const name = "openssl enc per segment (local)"
	if !have("openssl", "openssl") {
		b.skip(name, "openssl not installed")
		return nil
	}
	pf, err := b.writeSecret("openssl.pass", []byte(randHex(16)))
	if err != nil {
		return err
	}
	r := &row{name: name, note: "AES-128-CBC, one process per segment, output discarded"}
	var peak int64
	err = b.seqRows(r, func() (int64, error) {
		for _, p := range b.media.localPaths() {
			cmd := exec.Command("openssl", "enc", "-aes-128-cbc", "-pbkdf2", "-iter", "1", "-pass", "file:"+pf, "-in", p, "-out", os.DevNull)
			if out, err := cmd.CombinedOutput(); err != nil {
				return 0, fmt.Errorf("openssl enc: %v: %s", err, out)
			}
			peak = max(peak, maxRSS(cmd))
		}
		return b.media.bytes, nil
	})
	if err != nil {
		return err
	}
	r.rss = float64(peak) / 1024
	b.report.seq = append(b.report.seq, r)
	return nil
}

// ffmpegRow: what a user does without mpcfs - re-mux the local HLS with
// -hls_key_info_file, writing encrypted segments to disk.
func (b *bench) ffmpegRow() error {
	const name = "ffmpeg -hls_key_info_file (local)"
	key := make([]byte, 16)
	rand.Read(key)
	kp, err := b.writeSecret("ffmpeg.key", key)
	if err != nil {
		return err
	}
	ki, err := b.writeSecret("ffmpeg.keyinfo", []byte("https://keys.example.com/bench\n"+kp+"\n"))
	if err != nil {
		return err
	}
	r := &row{name: name, note: "AES-128 re-mux -c copy, segments written to disk"}
	var peak int64
	err = b.seqRows(r, func() (int64, error) {
		out, err := os.MkdirTemp(b.tmp, "ffmpeg-out-")
		if err != nil {
			return 0, err
		}
		defer os.RemoveAll(out)
		cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", filepath.Join(b.media.dir, "index.m3u8"),
			"-c", "copy", "-f", "hls", "-hls_time", fmt.Sprint(b.cfg.SegSeconds), "-hls_playlist_type", "vod",
			"-hls_key_info_file", ki, "-hls_segment_filename", filepath.Join(out, "seg_%04d.ts"), filepath.Join(out, "index.m3u8"))
		if msg, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("ffmpeg: %v: %s", err, msg)
		}
		peak = max(peak, maxRSS(cmd))
		return b.media.bytes, nil
	})
	if err != nil {
		return err
	}
	r.rss = float64(peak) / 1024
	b.report.seq = append(b.report.seq, r)
	return nil
}

// maxRSS is a finished child's peak RSS in KiB.
func maxRSS(cmd *exec.Cmd) int64 {
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}
