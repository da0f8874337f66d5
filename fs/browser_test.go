package fs_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/internal/sample"
)

// harnessDir is test/browser: player.html, play.js and their npm modules.
var harnessDir, _ = filepath.Abs(filepath.Join("..", "test", "browser"))

// playResult is what play.js prints.
type playResult struct {
	CurrentTime   float64  `json:"currentTime"`
	DecodedFrames int      `json:"decodedFrames"`
	Errors        []string `json:"errors"`
	Error         string   `json:"error"`
	Logs          []string `json:"logs"`
}

// TestBrowserPlays plays mpcfs outputs in headless Chromium, served by
// nginx (its workers run as nobody) from a mount made with --allow-other:
// Shaka Player with ClearKey plays DASH cenc and cbcs and fMP4 HLS cenc;
// hls.js plays AES-128 HLS. Each play seeks into a later segment and must
// get past it with frames decoded and no player error. A wrong ClearKey
// must fail (negative control).
func TestBrowserPlays(t *testing.T) {
	need(t, "root (allow_other, nginx workers as nobody)", os.Geteuid() == 0)
	need(t, "chromium (make browserdeps)", haveCmd("chromium"))
	need(t, "nginx (make browserdeps)", haveCmd("nginx"))
	need(t, "node (make browserdeps)", haveCmd("node"))
	_, err := os.Stat(filepath.Join(harnessDir, "node_modules", "shaka-player"))
	need(t, "test/browser/node_modules (make browserdeps)", err == nil)
	need(t, "ffmpeg", haveCmd("ffmpeg"))

	srcDir := t.TempDir()
	if _, err := sample.MakeDASH(filepath.Join(srcDir, "dash"), 8, false); err != nil {
		t.Fatal(err)
	}
	if _, err := sample.MakeFMP4(filepath.Join(srcDir, "fmp4"), 8); err != nil {
		t.Fatal(err)
	}
	ladderDir, _ := ladder(t)
	st, _ := localStore(t, "media", "public")
	upload(t, st, "media", "src/", srcDir)
	upload(t, st, "media", "ladder/", ladderDir)
	f := newFixtureOpts(t, st, ".mpcfs", mountOpts{allowOther: true})
	openPath(t, f.mnt)
	s := newSecret(t)

	keyDir := t.TempDir()
	os.Chmod(keyDir, 0o755)
	openPath(t, keyDir)
	os.WriteFile(filepath.Join(keyDir, "video.key"), s.key, 0o644)
	port := startNginx(t, f.path("buckets", "public"), keyDir)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	s.keyFile = base + "/keys/video.key" // the key URL written into playlists

	run := func(name string, req map[string]any) control.TaskView {
		t.Helper()
		f.t = t
		id := f.create(name+".json", req)
		v := f.wait(id)
		if v.Status != control.Succeeded {
			t.Fatalf("task %s: %s: %s", name, v.Status, v.Description)
		}
		return v
	}
	drm := func(mode string, emi int) map[string]any {
		return map[string]any{"multidrm": map[string]any{"emi": emi, "streaming_mode": mode, "content_id": fmt.Sprint("browser-", emi, mode),
			"drm_list": []string{"WIDEVINE", "PLAYREADY", "CLEARKEY"}, "encrypt_audio": 1}}
	}
	clearKeys := func(v control.TaskView, key []byte) map[string]string {
		return map[string]string{strings.ReplaceAll(v.KID, "-", ""): hex.EncodeToString(key)}
	}
	page := base + "/player/player.html"

	cenc := run("dash-cenc", shapeRequest("", s, "src/dash/manifest.mpd", "web/cenc", drm("DASH", 16420)))
	cbcs := run("dash-cbcs", shapeRequest("", s, "src/dash/manifest.mpd", "web/cbcs", drm("DASH", 16418)))
	leadReq := shapeRequest("", s, "src/dash/manifest.mpd", "web/lead", drm("DASH", 16418))
	leadReq["encryption"].(map[string]any)["preview_duration"] = 3
	lead := run("dash-lead", leadReq)
	hlsCENC := run("hls-cenc", shapeRequest("", s, "src/fmp4/index.m3u8", "web/hls", drm("HLS", 16420)))
	run("ts-aes", shapeRequest("AES-128-CBC", s, "ladder/master.m3u8", "web/ts", nil))

	for _, c := range []struct {
		name   string
		opts   map[string]any
		wantOK bool
	}{
		{"Shaka DASH cenc", map[string]any{"player": "shaka", "url": base + "/media/web/cenc/manifest.mpd", "clearKeys": clearKeys(cenc, s.key)}, true},
		{"Shaka DASH cbcs", map[string]any{"player": "shaka", "url": base + "/media/web/cbcs/manifest.mpd", "clearKeys": clearKeys(cbcs, s.key)}, true},
		{"Shaka DASH cbcs with a 3s clear lead", map[string]any{"player": "shaka", "url": base + "/media/web/lead/manifest.mpd", "clearKeys": clearKeys(lead, s.key)}, true},
		// The lead needs no key: with a wrong one it still plays to 1.5s
		// (buffering only a second ahead, so nothing past the lead is
		// decoded yet).
		{"Shaka DASH clear lead, wrong key", map[string]any{"player": "shaka", "url": base + "/media/web/lead/manifest.mpd",
			"clearKeys": clearKeys(lead, []byte("wrong key 123456")), "seek": 0.5, "until": 1.5, "bufferingGoal": 1}, true},
		{"Shaka fMP4 HLS cenc", map[string]any{"player": "shaka", "url": base + "/media/web/hls/index.m3u8", "clearKeys": clearKeys(hlsCENC, s.key)}, true},
		{"hls.js AES-128 HLS", map[string]any{"player": "hls.js", "url": base + "/media/web/ts/master.m3u8"}, true},
		{"Shaka DASH cenc, wrong key", map[string]any{"player": "shaka", "url": base + "/media/web/cenc/manifest.mpd",
			"clearKeys": clearKeys(cenc, []byte("wrong key 123456"))}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.opts["page"] = page
			if c.opts["seek"] == nil {
				c.opts["seek"], c.opts["until"] = 5.0, 7.0
			}
			c.opts["timeoutMs"] = 40000
			if !c.wantOK {
				c.opts["timeoutMs"] = 15000
			}
			r := play(t, c.opts)
			switch {
			case c.wantOK && r.Error != "":
				t.Fatalf("does not play: %s %v", r.Error, r.Logs)
			case c.wantOK && (r.CurrentTime < c.opts["until"].(float64) || r.DecodedFrames == 0):
				t.Fatalf("played to %.2fs with %d frames decoded", r.CurrentTime, r.DecodedFrames)
			case !c.wantOK && r.Error == "":
				t.Fatalf("plays with a wrong key: %+v", r)
			case !c.wantOK && !strings.Contains(r.Error, "error"):
				t.Fatalf("with a wrong key it fails, but not with a player or media error: %s", r.Error)
			}
			t.Logf("%s: %+v", c.name, r)
		})
	}
}

func play(t *testing.T, opts map[string]any) playResult {
	t.Helper()
	arg, _ := json.Marshal(opts)
	cmd := exec.Command("node", "play.js", string(arg))
	cmd.Dir = harnessDir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("play.js: %v: %s", err, out)
	}
	var r playResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("play.js printed %q", out)
	}
	return r
}

// startNginx serves the harness at /player/, the mount's public bucket at
// /media/ and keys at /keys/ on a free 127.0.0.1 port, with workers as
// nobody, until the test ends.
func startNginx(t *testing.T, media, keys string) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	conf := fmt.Sprintf(`daemon off;
user nobody nogroup;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	types {
		text/html html; application/javascript js; application/dash+xml mpd;
		video/mp4 m4s mp4; application/vnd.apple.mpegurl m3u8; video/mp2t ts;
		application/octet-stream key;
	}
	server {
		listen 127.0.0.1:%[2]d;
		location /player/ { alias %[3]s/; }
		location /media/ { alias %[4]s/; }
		location /keys/ { alias %[5]s/; }
	}
}
`, dir, port, harnessDir, media, keys)
	p := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nginx", "-p", dir, "-c", p)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt) // SIGINT: nginx's fast shutdown
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/player/player.html", port)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return port
			}
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx serves the harness with status %d: %s", resp.StatusCode, b)
		}
	}
	t.Fatal("nginx did not start")
	return 0
}
