// Command crashwriter writes to a store as fast as it can and reports each
// write on stdout only once it has returned. The store's crash test kills
// it at random moments and then checks that every reported write survived.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/twinpbx/twinpbx/firmware/store"
	"github.com/twinpbx/twinpbx/pbx/cdr"
	"github.com/twinpbx/twinpbx/pbx/location"
)

func main() {
	dir := flag.String("dir", "", "store folder")
	prefix := flag.String("prefix", "w", "prefix making this run's IDs unique")
	logKeep := flag.Int("logkeep", 0, "change log length (0: the default)")
	writers := flag.Int("writers", 1, "goroutines writing CDRs, and as many writing bindings, at once")
	flag.Parse()
	if err := run(*dir, *prefix, *logKeep, max(*writers, 1)); err != nil {
		log.Fatal(err)
	}
}

func run(dir, prefix string, logKeep, writers int) error {
	st, err := store.Open(dir, store.Options{LogKeep: logKeep, LockTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	var out sync.Mutex
	ack := func(kind, id string) {
		out.Lock()
		defer out.Unlock()
		// One write(2) per line, after the store call returned.
		os.Stdout.WriteString(kind + " " + id + "\n")
	}
	errs := make(chan error, 2*writers+1)
	for w := range writers {
		go writeCDRs(st, fmt.Sprintf("%s-%d", prefix, w), ack, errs)
		go writeBindings(st, fmt.Sprintf("%s-%d", prefix, w), ack, errs)
	}
	go func() {
		// Dialog churn: puts and deletes in the log.
		for i := 0; ; i++ {
			id := fmt.Sprintf("%s-%d", prefix, i%4)
			var err error
			if i%2 == 0 {
				err = st.PutDialog(id, []byte("state of "+id))
			} else {
				err = st.DeleteDialog(id)
			}
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	return <-errs
}

func writeCDRs(st *store.Store, prefix string, ack func(kind, id string), errs chan<- error) {
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		now := time.Now()
		r := cdr.Record{ID: id, CallID: id + "@test", Caller: "100", Callee: "101", Start: now, End: now, Disp: cdr.NoAnswer, SIPCode: 480}
		if err := st.AppendCDR(r); err != nil {
			errs <- err
			return
		}
		ack("cdr", id)
	}
}

func writeBindings(st *store.Store, prefix string, ack func(kind, id string), errs chan<- error) {
	for i := 0; ; i++ {
		contact := fmt.Sprintf("sip:%s-%d@192.0.2.1:5062", prefix, i)
		now := time.Now()
		b := location.Binding{AOR: fmt.Sprint(100 + i%5), Contact: contact, Source: "udp:192.0.2.1:5062", CallID: prefix, CSeq: uint32(i), Expires: now.Add(time.Hour), Updated: now}
		if err := st.SaveBinding(b); err != nil {
			errs <- err
			return
		}
		ack("bind", b.AOR+" "+contact)
	}
}
