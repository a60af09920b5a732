package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mercato-dev/mercato/internal/platform/config"
	"github.com/mercato-dev/mercato/internal/platform/db"
	"github.com/mercato-dev/mercato/internal/platform/events"
	"github.com/mercato-dev/mercato/internal/system"
)

const eventsUsage = `Usage:
  mercato events dead-letters list   [--stream S] [--limit N] [--json]
  mercato events dead-letters replay [--stream S] [--id ID] [--force] [--json]
  mercato events dead-outbox list    --service S [--limit N] [--json]
  mercato events dead-outbox replay  --service S [--id EVENT_ID] [--json]

dead-letters are the messages consumers gave up on, kept in the DEAD_LETTERS
stream of the NATS server at NATS_URL (default nats://nats:4222). list prints
one line each, oldest first: id, stream, subject, when, attempts, consumer,
error. replay republishes each to its original subject with its event id, so
the consumer that gave up handles it again and the others skip it, and then
deletes it; --force replays those older than consumers remember processed
events (8 days), which could apply them twice.

dead-outbox are the events a service's relay could not publish (JetStream
refused them too many times) and moved aside, in the database at the
service's DATABASE_URL. list prints one line each: event id, subject, when,
attempts, error. replay puts them back in the outbox; the service's relay
publishes them at its next poll. Fix the cause first (a missing stream, a size
limit), or they are moved aside again.

Without --id, replay takes every one (of --stream); --limit 0 lists all;
--json prints one JSON object per line instead.
`

// defaultListLimit bounds a list unless --limit says otherwise.
const defaultListLimit = 100

// usageError is bad input: printed as it is, exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func runEvents(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && slices.Contains([]string{"-h", "-help", "--help", "help"}, args[0]) {
		fmt.Fprint(stdout, eventsUsage)
		return 0
	}
	if len(args) < 2 {
		fmt.Fprintf(stderr, "mercato events: name what and what to do with it\n\n%s", eventsUsage)
		return exitUsage
	}
	command := "mercato events " + args[0] + " " + args[1]
	var run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
	switch args[0] + " " + args[1] {
	case "dead-letters list":
		run = listDeadLetters
	case "dead-letters replay":
		run = replayDeadLetters
	case "dead-outbox list":
		run = listDeadOutbox
	case "dead-outbox replay":
		run = replayDeadOutbox
	default:
		fmt.Fprintf(stderr, "mercato events: unknown command %q (see mercato events -h)\n", args[0]+" "+args[1])
		return exitUsage
	}
	ctx, stop := signalContext()
	defer stop()
	err := run(ctx, args[2:], stdout, stderr)
	var usage usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, eventsUsage)
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "%s: %s (see mercato events -h)\n", command, usage.msg)
		return exitUsage
	case errors.Is(err, events.ErrNoSuchDeadLetter), errors.Is(err, events.ErrReplayTooOld), misconfigured(err):
		fmt.Fprintf(stderr, "%s: %v\n", command, err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "%s: %v\n", command, err)
		return exitFailure
	}
}

// eventsFlags are the flags of every events command; each uses some.
type eventsFlags struct {
	fs      *flag.FlagSet
	stream  string
	service string
	id      string
	limit   int
	force   bool
	json    bool
}

func newEventsFlags() *eventsFlags {
	f := &eventsFlags{fs: flag.NewFlagSet("mercato events", flag.ContinueOnError)}
	// The flag package would print its own message and the defaults; the
	// caller prints one line instead.
	f.fs.SetOutput(io.Discard)
	f.fs.BoolVar(&f.json, "json", false, "one JSON object per line")
	return f
}

func (f *eventsFlags) parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if f.fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", f.fs.Arg(0))}
	}
	if f.limit < 0 {
		return usageError{fmt.Sprintf("--limit %d is negative", f.limit)}
	}
	return nil
}

// knownStream checks --stream against the streams of the system.
func (f *eventsFlags) knownStream() error {
	if f.stream == "" {
		return nil
	}
	var names []string
	for _, s := range system.Streams() {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	if !slices.Contains(names, f.stream) {
		return usageError{fmt.Sprintf("unknown stream %q (streams: %s)", f.stream, strings.Join(names, ", "))}
	}
	return nil
}

func listDeadLetters(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newEventsFlags()
	f.fs.StringVar(&f.stream, "stream", "", "only those from this stream")
	f.fs.IntVar(&f.limit, "limit", defaultListLimit, "at most this many, oldest first; 0 for all")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := f.knownStream(); err != nil {
		return err
	}
	js, closeNATS, err := dialNATS()
	if err != nil {
		return err
	}
	defer closeNATS()
	list, err := events.ListDeadLetters(ctx, js, events.DeadLetterFilter{Stream: f.stream, Limit: f.limit})
	if err != nil {
		return err
	}
	if err := printDeadLetters(stdout, f.json, list); err != nil {
		return err
	}
	noteLimit(stderr, f, len(list))
	return nil
}

func replayDeadLetters(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newEventsFlags()
	f.fs.StringVar(&f.stream, "stream", "", "only those from this stream")
	f.fs.StringVar(&f.id, "id", "", "only the dead letter with this id")
	f.fs.BoolVar(&f.force, "force", false, "replay dead letters older than consumers remember processed events too")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := f.knownStream(); err != nil {
		return err
	}
	var id uint64
	if f.id != "" {
		var err error
		if id, err = strconv.ParseUint(f.id, 10, 64); err != nil || id == 0 {
			return usageError{fmt.Sprintf("--id %q is not a dead letter id (a number from list)", f.id)}
		}
	}
	js, closeNATS, err := dialNATS()
	if err != nil {
		return err
	}
	defer closeNATS()
	replayed, err := events.ReplayDeadLetters(ctx, js, events.DeadLetterFilter{Stream: f.stream, ID: id, Force: f.force})
	if printErr := printReplayed(stdout, f.json, replayed, func(dl events.DeadLetter) string {
		return fmt.Sprintf("replayed dead letter %d (event %s) to %s", dl.ID, dl.EventID, dl.Subject)
	}); printErr != nil && err == nil {
		err = printErr
	}
	if err == nil && len(replayed) == 0 {
		fmt.Fprintln(stderr, "no dead letters to replay")
	}
	return err
}

func listDeadOutbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newEventsFlags()
	f.fs.StringVar(&f.service, "service", "", "the service whose outbox it is (required)")
	f.fs.IntVar(&f.limit, "limit", defaultListLimit, "at most this many, oldest first; 0 for all")
	if err := f.parse(args); err != nil {
		return err
	}
	d, err := openOutboxDB(ctx, f.service)
	if err != nil {
		return err
	}
	defer d.Close()
	list, err := events.ListDeadOutbox(ctx, d, events.DeadOutboxFilter{Limit: f.limit})
	if err != nil {
		return err
	}
	if err := printDeadOutbox(stdout, f.json, list); err != nil {
		return err
	}
	noteLimit(stderr, f, len(list))
	return nil
}

func replayDeadOutbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newEventsFlags()
	f.fs.StringVar(&f.service, "service", "", "the service whose outbox it is (required)")
	f.fs.StringVar(&f.id, "id", "", "only the row of this event id")
	if err := f.parse(args); err != nil {
		return err
	}
	d, err := openOutboxDB(ctx, f.service)
	if err != nil {
		return err
	}
	defer d.Close()
	replayed, err := events.ReplayDeadOutbox(ctx, d, events.DeadOutboxFilter{EventID: f.id})
	if err != nil {
		return err
	}
	if len(replayed) == 0 {
		fmt.Fprintln(stderr, "no dead outbox rows to replay")
	}
	return printReplayed(stdout, f.json, replayed, func(row events.DeadOutboxRow) string {
		return fmt.Sprintf("returned event %s (%s) to the outbox of %s", row.EventID, row.Subject, f.service)
	})
}

// noteLimit says on stderr, for a person reading the list, that it may
// have been cut.
func noteLimit(stderr io.Writer, f *eventsFlags, n int) {
	if !f.json && f.limit > 0 && n == f.limit {
		fmt.Fprintf(stderr, "(the first %d; --limit 0 lists all)\n", n)
	}
}

// dialNATS connects to the NATS server services use (NATS_URL).
func dialNATS() (js jetstream.JetStream, closeFn func(), err error) {
	env := config.NewEnv()
	url := system.NATSURL(env)
	if err := env.Err(); err != nil {
		return nil, nil, err
	}
	nc, jsc, err := events.Dial(url, "mercato-events")
	if err != nil {
		return nil, nil, err
	}
	return jsc, nc.Close, nil
}

// openOutboxDB opens the existing database of a service that publishes
// events, as DATABASE_URL names it.
func openOutboxDB(ctx context.Context, service string) (*db.DB, error) {
	if service == "" {
		return nil, usageError{"--service is required"}
	}
	svc, ok := system.Lookup(service)
	if !ok {
		return nil, usageError{fmt.Sprintf("unknown service %q (services: %s)", service, strings.Join(serviceNames(), ", "))}
	}
	if len(svc.Streams) == 0 {
		return nil, usageError{fmt.Sprintf("%s publishes no events, so it has no outbox", service)}
	}
	cfg, err := system.DBConfig(config.NewEnv(), service)
	if err != nil {
		return nil, err
	}
	d, err := db.OpenExisting(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open the database of %s: %w", service, err)
	}
	return d, nil
}

func printDeadLetters(w io.Writer, asJSON bool, list []events.DeadLetter) error {
	if asJSON {
		return printJSONLines(w, list)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, dl := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n",
			dl.ID, dl.Stream, dl.Subject, dl.Time.Format(time.RFC3339), dl.Attempts, dl.Consumer, dl.Error)
	}
	return tw.Flush()
}

func printDeadOutbox(w io.Writer, asJSON bool, list []events.DeadOutboxRow) error {
	if asJSON {
		return printJSONLines(w, list)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, row := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n",
			row.EventID, row.Subject, row.DeadAt.Format(time.RFC3339), row.Attempts, row.Error)
	}
	return tw.Flush()
}

func printReplayed[T any](w io.Writer, asJSON bool, list []T, line func(T) string) error {
	if asJSON {
		return printJSONLines(w, list)
	}
	for _, item := range list {
		if _, err := fmt.Fprintln(w, line(item)); err != nil {
			return err
		}
	}
	return nil
}

func printJSONLines[T any](w io.Writer, list []T) error {
	enc := json.NewEncoder(w)
	for _, item := range list {
		if err := enc.Encode(item); err != nil {
			return err
		}
	}
	return nil
}
