package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/httpapi"
	"github.com/mpcfs/mpcfs/tuning"
)

// httpConfig is the HTTP side's flags, for serve and for mount --listen.
type httpConfig struct {
	Listen      string
	Credentials string
	CORSOrigin  string
	CacheMaxAge time.Duration
	Grace       time.Duration
}

// defaultListen is serve's address: loopback only unless asked otherwise.
const defaultListen = "127.0.0.1:8080"

func (h *httpConfig) flags(fl *flag.FlagSet, serve bool) {
	def, what := "", "serve the MPC API and the HTTP origin on ADDR too (HOST:PORT; a bare :PORT is 127.0.0.1:PORT)"
	if serve {
		def, what = defaultListen, "address to serve on (HOST:PORT; a bare :PORT is 127.0.0.1:PORT; 0.0.0.0:PORT for every interface)"
	}
	fl.StringVar(&h.Listen, "listen", def, what)
	fl.StringVar(&h.Credentials, "api-credentials", "", "file of API credentials, ACCESS_KEY:SECRET_KEY:PROJECT_ID a line, mode 0600 (required with --listen)")
	fl.StringVar(&h.CORSOrigin, "cors-origin", "", "browser origins allowed to fetch from the origin, comma separated (\"*\": any)")
	fl.DurationVar(&h.CacheMaxAge, "cache-max-age", httpapi.DefaultCacheMaxAge, "the origin's Cache-Control max-age (0s: no-cache)")
	fl.DurationVar(&h.Grace, "shutdown-grace", 10*time.Second, "on SIGTERM/SIGINT, how long responses in flight may take to finish")
}

func (h *httpConfig) check(serve bool) error {
	if h.Listen == "" {
		if h.Credentials != "" || h.CORSOrigin != "" {
			return errors.New("--api-credentials and --cors-origin need --listen")
		}
		return nil
	}
	if h.Credentials == "" {
		return errors.New("--listen needs --api-credentials FILE (ACCESS_KEY:SECRET_KEY:PROJECT_ID lines, mode 0600)")
	}
	addr, err := httpapi.ListenAddr(h.Listen)
	if err != nil {
		return err
	}
	h.Listen = addr
	return nil
}

// web is a listening HTTP side; a nil *web (no --listen) does nothing.
type web struct {
	cfg   *httpConfig
	creds httpapi.Credentials
	ln    net.Listener
	log   *log.Logger
	stop  context.CancelFunc
	ctx   context.Context
}

// listen reads the credentials and binds the address.
func (h *httpConfig) listen(lg *log.Logger) (*web, error) {
	if h.Listen == "" {
		return nil, nil
	}
	creds, err := httpapi.LoadCredentials(h.Credentials)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", h.Listen)
	if err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	return &web{cfg: h, creds: creds, ln: ln, log: lg, ctx: ctx, stop: stop}, nil
}

func (w *web) closeListener() {
	if w != nil {
		w.ln.Close()
		w.stop()
	}
}

// serve starts serving on mgr; the channel closes when serving has ended.
func (w *web) serve(mgr *control.Manager) <-chan struct{} {
	done := make(chan struct{})
	if w == nil {
		close(done)
		return done
	}
	var origins []string
	if w.cfg.CORSOrigin != "" {
		origins = strings.Split(w.cfg.CORSOrigin, ",")
	}
	maxAge := w.cfg.CacheMaxAge
	if maxAge == 0 {
		maxAge = -1 // the flag's 0s means no-cache
	}
	h := httpapi.New(httpapi.Config{Manager: mgr, Credentials: w.creds, CORSOrigins: origins, CacheMaxAge: maxAge, Log: w.log})
	w.log.Printf("serving the MPC API and the origin on http://%s (%d API credentials)", w.ln.Addr(), len(w.creds))
	go func() {
		defer close(done)
		if err := httpapi.Serve(w.ctx, w.ln, h, w.cfg.Grace, w.log); err != nil {
			w.log.Printf("http: %v", err)
		}
	}()
	go w.reloadOnHangup(h)
	return done
}

// reloadOnHangup rereads the credentials file on every SIGHUP, so keys
// can be rotated without restarting (for a mount: without unmounting). A
// file that does not load (mode, syntax) leaves the credentials in use.
func (w *web) reloadOnHangup(h *httpapi.Server) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-hup:
			creds, err := httpapi.LoadCredentials(w.cfg.Credentials)
			if err != nil {
				w.log.Printf("SIGHUP: keeping the API credentials in use: %v", err)
				continue
			}
			h.SetCredentials(creds)
			w.log.Printf("SIGHUP: API credentials reloaded (%d)", len(creds))
		}
	}
}

// shutdown stops taking requests; those in flight finish within the grace.
func (w *web) shutdown(sig os.Signal) {
	if w == nil {
		return
	}
	if sig != nil {
		w.log.Printf("%v: stopping the HTTP side (up to %v for responses in flight)", sig, w.cfg.Grace)
	}
	w.stop()
}

func parseServeFlags(args []string) (*mountConfig, error) {
	c := &mountConfig{Tuning: tuning.Default()}
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	c.managerFlags(fl, "append the log to this file (default stderr)")
	c.HTTP.flags(fl, true)
	fl.Usage = func() {
		fmt.Fprintln(fl.Output(), "usage: mpcfs serve [flags]   (the MPC API and the HTTP origin, no FUSE)")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return nil, err
	}
	if fl.NArg() != 0 {
		fl.Usage()
		return nil, fmt.Errorf("serve takes no arguments, got %q", fl.Arg(0))
	}
	if c.HTTP.Listen == "" {
		return nil, errors.New("serve needs --listen ADDR")
	}
	if err := c.HTTP.check(true); err != nil {
		return nil, err
	}
	return c, c.resolve()
}

// runServe serves the API and the origin without mounting, until SIGINT or
// SIGTERM; then responses in flight finish (bounded) and tasks are left
// to resume on the next start.
func runServe(args []string) error {
	c, err := parseServeFlags(args)
	if err != nil {
		return err
	}
	setMemoryLimit(c.Tuning)
	slg, closeLog, err := newLogger(c.LogLevel, c.LogFormat, c.LogFile, false)
	if err != nil {
		return err
	}
	defer closeLog()
	lg := stdLogger(slg)
	w, err := c.HTTP.listen(lg)
	if err != nil {
		return err
	}
	st, err := openStore(&c.storeConfig)
	if err != nil {
		w.closeListener()
		return err
	}
	mgr, err := openManager(&c.storeConfig, c.Region, c.Tuning, st, slg)
	if err != nil {
		w.closeListener()
		return err
	}
	gcCtx, stopGC := context.WithCancel(context.Background())
	defer stopGC()
	followCatalogue(gcCtx, c.Tuning, mgr, slg)
	slg.Info("serving", "listen", c.HTTP.Listen, "store", c.describe(), "system_bucket", c.SysBucket,
		"master_key_file", c.MasterKey, "tasks_loaded", mgr.TaskCount(), "region", c.Region, "version", versionString())
	done := w.serve(mgr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		w.shutdown(s)
	case <-done:
	}
	<-done
	mgr.Close()
	lg.Printf("stopped")
	return nil
}
