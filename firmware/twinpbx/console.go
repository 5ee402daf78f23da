package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/term"

	"github.com/twinpbx/twinpbx/tui"
)

// fullScreen reports whether the console can run full screen on f: a
// terminal that is not TERM=dumb and reports a size. A serial console
// that reads as 0×0 gets the line-by-line mode.
func fullScreen(in, out *os.File) bool {
	if os.Getenv("TERM") == "dumb" || os.Getenv("TERM") == "" {
		return false
	}
	if !term.IsTerminal(in.Fd()) || !term.IsTerminal(out.Fd()) {
		return false
	}
	w, h, err := term.GetSize(out.Fd())
	return err == nil && w > 0 && h > 0
}

func cmdSetup(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs, data := newFlags("setup")
	langS := fs.String("lang", "en", "language: en or de")
	accessible := fs.Bool("accessible", false, "ask one question per line")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("setup: unexpected argument %q", fs.Arg(0))}
	}
	lang, err := tui.ParseLang(*langS)
	if err != nil {
		return usageError{"setup: " + err.Error()}
	}
	w := tui.NewWizard(tui.Options{Lang: lang, GatewayAnswers: tui.GatewayAnswers, Apply: tui.ApplyToDataDir(*data)})
	if *accessible || stdout != os.Stdout || !fullScreen(os.Stdin, os.Stdout) {
		return tui.RunAccessible(ctx, w, os.Stdin, stdout)
	}
	p := tea.NewProgram(tui.NewSetupModel(ctx, w), tea.WithContext(ctx), tea.WithAltScreen())
	final, err := p.Run()
	if err != nil && !errors.Is(err, tea.ErrProgramKilled) {
		return fmt.Errorf("running the setup wizard: %w", err)
	}
	m, _ := final.(tui.SetupModel)
	if !m.Done() {
		return tui.ErrAborted
	}
	fmt.Fprint(stdout, m.Message())
	if m.Failed() {
		return errors.New("setup: the config was not applied")
	}
	return nil
}

func cmdConsole(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs, data := newFlags("console")
	langS := fs.String("lang", "", "language: en or de (default: the config's)")
	accessible := fs.Bool("accessible", false, "print the status once per line instead of full screen")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("console: unexpected argument %q", fs.Arg(0))}
	}
	var lang tui.Lang
	if *langS != "" {
		l, err := tui.ParseLang(*langS)
		if err != nil {
			return usageError{"console: " + err.Error()}
		}
		lang = l
	}
	b := tui.DataDirBackend(*data)
	if *accessible || stdout != os.Stdout || !fullScreen(os.Stdin, os.Stdout) {
		return tui.RunDashboardLines(ctx, b, lang, os.Stdin, stdout)
	}
	m, err := tui.NewDashboard(ctx, b, lang)
	if err != nil {
		return err
	}
	p := tea.NewProgram(m, tea.WithContext(ctx), tea.WithAltScreen())
	if _, err := p.Run(); err != nil && !errors.Is(err, tea.ErrProgramKilled) {
		return fmt.Errorf("running the console: %w", err)
	}
	return nil
}

// cmdConsoleUI runs `twinpbx setup` or `twinpbx console`.
func cmdConsoleUI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if args[0] == "setup" {
		return cmdSetup(ctx, args[1:], stdout, stderr)
	}
	return cmdConsole(ctx, args[1:], stdout, stderr)
}
