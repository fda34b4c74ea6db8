package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
)

// logs holds one file per component in the run dir. klog is global to the process: its global
// output (the API server and the libraries the components share) goes to apiserver.log; the
// controller manager gets its own contextual logger, so the lines its controllers log through
// their context go to controller-manager.log.
type logs struct {
	files    []*os.File
	kcm      klog.Logger
	node     *log.Logger
	etcdPath string
	stderr   *log.Logger
	verbose  bool
}

func openLogs(dir string, verbose bool) (*logs, error) {
	l := &logs{
		verbose: verbose,
		stderr:  log.New(os.Stderr, "portcullis-testcluster: ", 0),
	}
	open := func(name string) (*os.File, error) {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, err
		}
		l.files = append(l.files, f)
		return f, nil
	}
	apiserver, err := open("apiserver.log")
	if err != nil {
		return nil, err
	}
	kcm, err := open("controller-manager.log")
	if err != nil {
		return nil, err
	}
	node, err := open("node.log")
	if err != nil {
		return nil, err
	}
	l.etcdPath = filepath.Join(dir, "etcd.log")

	verbosity := 1
	if verbose {
		verbosity = 3
	}
	// klog's own verbosity gates klog.V(n) before a call reaches the logger.
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	if err := fs.Set("v", strconv.Itoa(verbosity)); err != nil {
		return nil, err
	}
	newLogger := func(w io.Writer) klog.Logger {
		return textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(w), textlogger.Verbosity(verbosity)))
	}
	klog.SetLoggerWithOptions(newLogger(apiserver), klog.ContextualLogger(true))
	l.kcm = newLogger(kcm)

	var nodeOut io.Writer = node
	if verbose {
		nodeOut = io.MultiWriter(node, os.Stderr)
	}
	l.node = log.New(nodeOut, "node: ", log.LstdFlags|log.Lmicroseconds)
	return l, nil
}

// say prints one concise line on stderr.
func (l *logs) say(format string, args ...any) {
	l.stderr.Print(fmt.Sprintf(format, args...))
}

func (l *logs) close() {
	klog.Flush()
	for _, f := range l.files {
		_ = f.Close()
	}
}
