package tui

// The box's image has no zoneinfo files; the wizard checks the time zone
// typed and the console shows its clock in it (TZ, set by init), so the
// zone database is built in.
import _ "time/tzdata"
