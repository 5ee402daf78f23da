package tui

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/charmbracelet/x/term"
)

// ErrAborted is returned when the input ends before the wizard is done.
var ErrAborted = errors.New("setup aborted before the config was applied")

// RunAccessible asks the wizard's questions one per line on in and out,
// for dumb serial consoles and screen readers: the same pages, checks and
// messages as the full-screen wizard. An empty line takes the default, "-"
// goes back. Secrets are read without echo when in is a terminal.
func RunAccessible(ctx context.Context, w *Wizard, in io.Reader, out io.Writer) error {
	r := bufio.NewReader(in)
	read := func(secret bool) (string, error) {
		if f, ok := in.(*os.File); ok && secret && term.IsTerminal(f.Fd()) {
			b, err := term.ReadPassword(f.Fd())
			fmt.Fprintln(out)
			return string(b), err
		}
		s, err := r.ReadString('\n')
		if err != nil && (s == "" || !errors.Is(err, io.EOF)) {
			if errors.Is(err, io.EOF) {
				return "", ErrAborted
			}
			return "", fmt.Errorf("reading the answer: %w", err)
		}
		return strings.TrimRight(s, "\r\n"), nil
	}
	i := w.next(-1)
	page := ""
	warned := ""
	for i < len(w.qs) {
		if err := ctx.Err(); err != nil {
			return err
		}
		q := w.qs[i]
		n, total := w.position(i)
		if q.page != page {
			page = q.page
			fmt.Fprintf(out, "\n== %s (%s) ==\n", w.t(q.page), w.t("step", n, total))
		}
		if q.help != "" {
			fmt.Fprintln(out, w.t(q.help))
		}
		if q.body != nil {
			for _, l := range q.body(w) {
				fmt.Fprintln(out, l)
			}
		}
		var choices []choice
		switch q.kind {
		case kindChoice:
			fmt.Fprintln(out, w.t("q."+q.id))
			choices = q.choices(w)
			def := w.defaultFor(i)
			defN := 1
			for j, c := range choices {
				fmt.Fprintf(out, "  %d. %s\n", j+1, w.t(c.label))
				if c.value == def {
					defN = j + 1
				}
			}
			fmt.Fprintf(out, "%s [%d]: ", w.t("acc.choose"), defN)
		case kindInfo:
			fmt.Fprintf(out, "%s [Enter] ", w.t("q."+q.id))
		case kindReview:
			fmt.Fprintln(out, w.t("q.review"))
			fmt.Fprintf(out, "%s: ", w.t("acc.apply"))
		default:
			fmt.Fprint(out, w.t("q."+q.id))
			if d := w.defaultFor(i); d != "" {
				fmt.Fprintf(out, " [%s]", d)
			}
			fmt.Fprint(out, " ")
		}
		v, err := read(q.kind == kindSecret)
		if err != nil {
			return err
		}
		v = strings.TrimSpace(v)
		if v == "-" {
			if j := w.prev(i); j != i {
				i = j
				page = ""
			}
			continue
		}
		switch q.kind {
		case kindChoice:
			if v == "" {
				v = w.defaultFor(i)
			} else if k, err := strconv.Atoi(v); err == nil && k >= 1 && k <= len(choices) {
				v = choices[k-1].value
			}
		case kindInfo:
			v = "ok"
		case kindReview:
			if !strings.EqualFold(v, "yes") && !strings.EqualFold(v, w.t("yes")) {
				continue
			}
			res, err := w.Result()
			if err != nil {
				fmt.Fprintln(out, "! "+w.t("e.config", err.Error()))
				continue
			}
			text := w.t("applied")
			if w.opts.Apply != nil {
				if text, err = w.opts.Apply(ctx, res); err != nil {
					fmt.Fprintln(out, "! "+w.t("apply.fail", err.Error()))
					return err
				}
			}
			fmt.Fprintln(out, text)
			return nil
		}
		e, wn := w.answer(ctx, i, v, warned != "" && v == warned)
		switch {
		case e != "":
			fmt.Fprintln(out, "! "+e)
			warned = ""
		case wn != "":
			fmt.Fprintln(out, wn+" "+w.t("acc.again"))
			warned = v
		default:
			warned = ""
			i = w.next(i)
		}
	}
	return nil
}
