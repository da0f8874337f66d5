package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mpcfs/mpcfs/fs"
	"github.com/mpcfs/mpcfs/internal/sample"
	"github.com/mpcfs/mpcfs/tuning"
)

// runDemo shows the whole product on the embedded default store: it makes
// sample HLS and DASH with ffmpeg in a local store, mounts it, submits an
// AES-128-CBC task and a multidrm (cenc) task through control/, and checks
// with ffmpeg that the encrypted outputs decode to the same frames as the
// source.
func runDemo(args []string) error {
	fl := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fl.String("dir", "demo-work", "working folder for the demo's store, mount point and keys")
	keep := fl.Bool("keep", false, "stay mounted until Ctrl-C after the checks")
	if err := fl.Parse(args); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	d := &demo{dir: abs, log: log.New(os.Stderr, "mpcfs demo: ", 0)}
	return d.run(*keep)
}

type demo struct {
	dir string
	log *log.Logger
	m   *mounted
	mnt string
}

func (d *demo) run(keep bool) error {
	storeDir := filepath.Join(d.dir, "store")
	d.log.Printf("making sample HLS with ffmpeg in %s/media/vod", storeDir)
	if _, err := sample.MakeLadder(filepath.Join(storeDir, "media", "vod"), 8); err != nil {
		return err
	}
	d.log.Printf("making sample DASH with ffmpeg in %s/media/dash", storeDir)
	dash, err := sample.MakeDASH(filepath.Join(storeDir, "media", "dash"), 4, false)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(storeDir, "public"), 0o755); err != nil {
		return err
	}
	d.mnt = filepath.Join(d.dir, "mnt")
	if err := os.MkdirAll(d.mnt, 0o755); err != nil {
		return err
	}
	c := &mountConfig{storeConfig: storeConfig{StoreDir: storeDir, MasterKey: filepath.Join(d.dir, "master.key")},
		Region: "region1", Mountpoint: d.mnt, OthersSee: fs.OthersSeeOutputs, Tuning: tuning.Default()}
	if err := c.resolve(); err != nil {
		return err
	}
	m, err := startMount(c, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		return err
	}
	d.m = m
	defer func() { m.unmount(); m.stopServices() }()
	if err := d.task(); err != nil {
		return err
	}
	if err := d.dashTask(dash); err != nil {
		return err
	}
	if keep {
		d.log.Printf("mounted at %s; press Ctrl-C to unmount", d.mnt)
		waitForSignal()
	}
	return nil
}

// task submits the request, waits for it and checks the output.
func (d *demo) task() error {
	keyFile, key, err := d.makeKey()
	if err != nil {
		return err
	}
	req := map[string]any{
		"input":  map[string]string{"bucket": "media", "location": "region1", "object": "vod/master.m3u8"},
		"output": map[string]string{"bucket": "public", "location": "region1", "object": "vod-enc"},
		"encryption": map[string]any{"hls_encrypt": map[string]string{
			"key": key, "url": keyFile, "algorithm": "AES-128-CBC"}},
		"user_data": "mpcfs demo",
	}
	if err := d.submit("demo.json", req); err != nil {
		return err
	}
	return d.check()
}

// submit writes req to control/encryptions/NAME as an admin would, reads
// the response back and waits until the task is SUCCEEDED.
func (d *demo) submit(name string, req map[string]any) error {
	body, _ := json.MarshalIndent(req, "", "  ")
	reqPath := filepath.Join(d.mnt, "control", "encryptions", name)
	if err := os.WriteFile(reqPath, body, 0o600); err != nil {
		return fmt.Errorf("writing the request: %w", err)
	}
	resp, err := os.ReadFile(reqPath)
	if err != nil {
		return err
	}
	d.log.Printf("control/encryptions/%s -> %s", name, strings.TrimSpace(string(resp)))
	var created struct {
		TaskID string `json:"task_id"`
	}
	if err := json.Unmarshal(resp, &created); err != nil || created.TaskID == "" {
		return fmt.Errorf("task was not created: %s", resp)
	}
	return d.wait(created.TaskID)
}

// dashTask is the multidrm half: Common Encryption (cenc) of the sample
// DASH for Widevine, PlayReady and ClearKey, checked segment by segment
// with ffmpeg's -decryption_key against the source.
func (d *demo) dashTask(dash *sample.DASH) error {
	key := make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	req := map[string]any{
		"input":  map[string]string{"bucket": "media", "location": "region1", "object": "dash/" + dash.MPD},
		"output": map[string]string{"bucket": "public", "location": "region1", "object": "dash-cenc"},
		"encryption": map[string]any{
			"hls_encrypt": map[string]string{"key": base64.StdEncoding.EncodeToString(key), "url": "https://license.example.com/clearkey"},
			"multidrm": map[string]any{"emi": 16420, "content_id": "mpcfs-demo", "streaming_mode": "DASH",
				"drm_list": []string{"WIDEVINE", "PLAYREADY", "CLEARKEY"}}},
		"user_data": "mpcfs demo: multidrm",
	}
	if err := d.submit("demo-dash.json", req); err != nil {
		return err
	}
	src := filepath.Join(d.mnt, "buckets", "media", "dash")
	out := filepath.Join(d.mnt, "buckets", "public", "dash-cenc")
	if mpd, err := os.ReadFile(filepath.Join(out, dash.MPD)); err == nil {
		d.log.Printf("output %s has ContentProtection for %d systems", filepath.Join(out, dash.MPD), strings.Count(string(mpd), "<ContentProtection"))
	}
	segments := 0
	for _, r := range dash.Reps {
		if !r.Video {
			continue // audio stays clear (encrypt_audio 0)
		}
		for _, seg := range r.Segments {
			want, err := demoFrames(filepath.Join(d.dir, "check"), src, r.Init, seg, "")
			if err != nil {
				return err
			}
			got, err := demoFrames(filepath.Join(d.dir, "check"), out, r.Init, seg, hex.EncodeToString(key))
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("ffmpeg -decryption_key decodes %s of representation %s to other frames than the source", seg, r.ID)
			}
			if segments == 0 { // and without the key it does not: it is encrypted
				if clear, err := demoFrames(filepath.Join(d.dir, "check"), out, r.Init, seg, ""); err == nil && clear == want {
					return fmt.Errorf("%s of representation %s decodes without the key: not encrypted", seg, r.ID)
				}
			}
			segments++
		}
	}
	d.log.Printf("OK: ffmpeg -decryption_key decrypts all %d video segments of %s (cenc) to the source's frames", segments, out)
	return nil
}

// demoFrames is ffmpeg's framemd5 of init + one media segment of dir
// (ffmpeg decrypts a CENC file of one fragment reliably).
func demoFrames(work, dir, init, seg, keyHex string) (string, error) {
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", err
	}
	a, err := os.ReadFile(filepath.Join(dir, init))
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(dir, seg))
	if err != nil {
		return "", err
	}
	f := filepath.Join(work, "one.mp4")
	if err := os.WriteFile(f, append(a, b...), 0o644); err != nil {
		return "", err
	}
	if keyHex == "" {
		return sample.FrameMD5(f)
	}
	return sample.FrameMD5(f, "-decryption_key", keyHex)
}

// makeKey writes a fresh demo key where ffmpeg can read it (a key server
// would serve it in production) and returns its path and base64 form.
func (d *demo) makeKey() (string, string, error) {
	key := make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		return "", "", err
	}
	path := filepath.Join(d.dir, "demo.key")
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return "", "", err
	}
	return path, base64.StdEncoding.EncodeToString(key), nil
}

func (d *demo) wait(id string) error {
	taskPath := filepath.Join(d.mnt, "control", "tasks", id+".json")
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		data, err := os.ReadFile(taskPath)
		if err != nil {
			return err
		}
		var v struct{ Status, Description string }
		json.Unmarshal(data, &v)
		switch v.Status {
		case "SUCCEEDED":
			d.log.Printf("control/tasks/%s.json:\n%s", id, data)
			return nil
		case "FAILED", "CANCELED":
			return fmt.Errorf("task %s %s: %s", id, v.Status, v.Description)
		}
	}
	return errors.New("task did not finish within a minute")
}

// check decodes source and encrypted output with ffmpeg and compares.
func (d *demo) check() error {
	out := filepath.Join(d.mnt, "buckets", "public", "vod-enc")
	entries, _ := os.ReadDir(filepath.Join(out, "v0"))
	d.log.Printf("output %s/v0 has %d files, e.g. index.m3u8:", out, len(entries))
	if pl, err := os.ReadFile(filepath.Join(out, "v0", "index.m3u8")); err == nil {
		fmt.Fprintf(os.Stderr, "%s", pl)
	}
	src, err := sample.FrameMD5(filepath.Join(d.mnt, "buckets", "media", "vod", "master.m3u8"))
	if err != nil {
		return err
	}
	enc, err := sample.FrameMD5(filepath.Join(out, "master.m3u8"), "-allowed_extensions", "ALL")
	if err != nil {
		return err
	}
	if src != enc {
		return errors.New("ffmpeg decodes the encrypted output to different frames than the source")
	}
	d.log.Printf("OK: ffmpeg decrypts %s to the same %d frames as the source", filepath.Join(out, "master.m3u8"), strings.Count(src, "\n")-strings.Count(src, "#"))
	return nil
}
