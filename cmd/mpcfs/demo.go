package main

import (
	"crypto/rand"
	"encoding/base64"
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
// sample HLS with ffmpeg in a local store, mounts it, submits an AES-128-CBC
// task through control/, and checks with ffmpeg that the encrypted output
// decodes to the same frames as the source.
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
	body, _ := json.MarshalIndent(req, "", "  ")
	reqPath := filepath.Join(d.mnt, "control", "encryptions", "demo.json")
	if err := os.WriteFile(reqPath, body, 0o600); err != nil {
		return fmt.Errorf("writing the request: %w", err)
	}
	resp, err := os.ReadFile(reqPath)
	if err != nil {
		return err
	}
	d.log.Printf("control/encryptions/demo.json -> %s", strings.TrimSpace(string(resp)))
	var created struct {
		TaskID string `json:"task_id"`
	}
	if err := json.Unmarshal(resp, &created); err != nil || created.TaskID == "" {
		return fmt.Errorf("task was not created: %s", resp)
	}
	if err := d.wait(created.TaskID); err != nil {
		return err
	}
	return d.check()
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
