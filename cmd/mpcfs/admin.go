package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/crypto/keywrap"
)

// adminFlags parses the store flags of init, rekey and tasks.
func adminFlags(name, usage string, args []string, more func(fl *flag.FlagSet)) (*storeConfig, []string, error) {
	c := &storeConfig{noKey: name == "tasks" || name == "rekey"}
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	c.addFlags(fl)
	if more != nil {
		more(fl)
	}
	fl.Usage = func() {
		fmt.Fprintln(fl.Output(), "usage: mpcfs "+name+" "+usage)
		fl.PrintDefaults()
	}
	pos, err := parseInterleaved(fl, args)
	if err != nil {
		return nil, nil, err
	}
	return c, pos, c.resolve()
}

// runInit is `mpcfs init`: the explicit first start. It makes the master
// key file and records its check value in the task store, and says to back
// the file up.
func runInit(args []string) error {
	c, pos, err := adminFlags("init", "[store flags] [--master-key-file F]", args, nil)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError{"init takes no arguments"}
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := control.InitMasterKey(ctx, st, c.SysBucket, c.MasterKey); err != nil {
		return err
	}
	fmt.Printf("created master key file %s for the task store in bucket %q of %s\n", c.MasterKey, c.SysBucket, c.describe())
	fmt.Println("BACK IT UP NOW, somewhere safe and apart from the store: without it no task of this store can be served again.")
	return nil
}

// runRekey is `mpcfs rekey OLD NEW`: every task's key is re-sealed from
// master key file OLD to NEW (created if missing). Stop every mount of the
// store first.
func runRekey(args []string) error {
	c, pos, err := adminFlags("rekey", "[store flags] OLD_KEY_FILE NEW_KEY_FILE", args, nil)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError{"rekey needs OLD_KEY_FILE and NEW_KEY_FILE"}
	}
	old, err := keywrap.Load(pos[0])
	if err != nil {
		return fmt.Errorf("old master key: %w", err)
	}
	created := false
	var nw *keywrap.Master
	if keywrap.Exists(pos[1]) {
		nw, err = keywrap.Load(pos[1])
	} else {
		nw, err = keywrap.Create(pos[1])
		created = true
	}
	if err != nil {
		return fmt.Errorf("new master key: %w", err)
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	resealed, skipped, err := control.Rekey(ctx, st, c.SysBucket, old, nw)
	if err != nil {
		return fmt.Errorf("rekey stopped after %d tasks (run it again to finish; %s still opens the rest): %w", resealed, pos[0], err)
	}
	if created {
		fmt.Printf("created master key file %s: BACK IT UP NOW\n", pos[1])
	}
	fmt.Printf("re-sealed %d tasks (%d already sealed with the new key) in bucket %q; mount with --master-key-file %s from now on\n", resealed, skipped, c.SysBucket, pos[1])
	return nil
}

// runTasks is `mpcfs tasks`: MPC's task query from the shell, reading the
// task store directly (a mount need not run).
func runTasks(args []string) error {
	var status, since, until, ids string
	var asJSON bool
	c, pos, err := adminFlags("tasks", "[store flags] [--status S] [--since T] [--until T] [--task-id ID,...] [--json]", args, func(fl *flag.FlagSet) {
		fl.StringVar(&status, "status", "", "only tasks in this status: WAITING, PROCESSING, SUCCEEDED, FAILED or CANCELED")
		fl.StringVar(&since, "since", "", "only tasks created at or after T: yyyymmddhhmmss (UTC, as MPC's start_time), RFC 3339, or a duration ago (24h)")
		fl.StringVar(&until, "until", "", "only tasks created before T (same forms as --since)")
		fl.StringVar(&ids, "task-id", "", "only these task ids, comma separated")
		fl.BoolVar(&asJSON, "json", false, `print MPC's query body {"task_array":[...],"total":N,"is_truncated":0}`)
	})
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError{"tasks takes no arguments (see -h)"}
	}
	f := control.TaskFilter{Status: control.Status(strings.ToUpper(status))}
	switch f.Status {
	case "", control.Waiting, control.Processing, control.Succeeded, control.Failed, control.Canceled:
	default:
		return usageError{fmt.Sprintf("--status %q: want WAITING, PROCESSING, SUCCEEDED, FAILED or CANCELED", status)}
	}
	if f.Since, err = parseWhen(since); err != nil {
		return usageError{"--since: " + err.Error()}
	}
	if f.Until, err = parseWhen(until); err != nil {
		return usageError{"--until: " + err.Error()}
	}
	if ids != "" {
		f.IDs = strings.Split(ids, ",")
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tasks, err := control.ListTasks(ctx, st, c.SysBucket, f)
	if err != nil {
		return err
	}
	if asJSON {
		if tasks == nil {
			tasks = []control.TaskView{}
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"task_array": tasks, "total": len(tasks), "is_truncated": 0})
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK_ID\tSTATUS\tCREATED\tENDED\tINPUT\tOUTPUT\tDESCRIPTION")
	for _, t := range tasks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%s\t%s/%s\t%s\n", t.TaskID, t.Status, t.CreateTime, orDefault(t.EndTime, "-"),
			t.Input.Bucket, t.Input.Object, t.Output.Bucket, t.Output.Object, t.Description)
	}
	return tw.Flush()
}

// parseWhen reads MPC's yyyymmddhhmmss (UTC), RFC 3339, or a duration ago.
func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse("20060102150405", s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not yyyymmddhhmmss, RFC 3339 or a duration like 24h", s)
}
