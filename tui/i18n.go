package tui

import (
	"fmt"
	"strings"
)

// Lang is a console language.
type Lang string

// The console's languages.
const (
	English Lang = "en"
	German  Lang = "de"
)

// ParseLang accepts "en" or "de" (any case, "" meaning English).
func ParseLang(s string) (Lang, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "en", "english":
		return English, nil
	case "de", "deutsch", "german":
		return German, nil
	}
	return "", fmt.Errorf("language %q: want en or de", s)
}

// T returns the catalogue text for key in l, formatted with args. A key
// missing in l falls back to English; a key missing everywhere is shown as
// itself, so a gap is visible instead of silent.
func (l Lang) T(key string, args ...any) string {
	e, ok := catalogue[key]
	if !ok {
		return key
	}
	s := e.en
	if l == German && e.de != "" {
		s = e.de
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return s
}

type entry struct{ en, de string }

// catalogue holds every text the console shows, in both languages.
var catalogue = map[string]entry{
	// Frame.
	"title":     {"twinpbx setup", "twinpbx Einrichtung"},
	"step":      {"Step %d of %d", "Schritt %d von %d"},
	"keys.text": {"Enter: next   Esc: back   Ctrl+C: quit", "Enter: weiter   Esc: zurück   Strg+C: abbrechen"},
	"keys.choice": {"Up/Down or 1-9: choose   Enter: next   Esc: back   Ctrl+C: quit",
		"Hoch/Runter oder 1-9: wählen   Enter: weiter   Esc: zurück   Strg+C: abbrechen"},
	"keys.review": {"Enter: apply   Esc: back   Ctrl+C: quit", "Enter: übernehmen   Esc: zurück   Strg+C: abbrechen"},
	"keys.done":   {"Enter: quit", "Enter: beenden"},
	"default":     {"(Enter alone keeps: %s)", "(nur Enter übernimmt: %s)"},
	"warn.again":  {"Press Enter again to keep it anyway.", "Nochmals Enter, um es trotzdem zu übernehmen."},
	"acc.back":    {"(type - to go back)", "(- eingeben, um zurückzugehen)"},
	"acc.choose":  {"Number of your choice", "Nummer Ihrer Wahl"},
	"acc.again":   {"Type the same again to keep it anyway.", "Dasselbe nochmals eingeben, um es trotzdem zu übernehmen."},
	"acc.apply":   {"Type yes to apply, - to go back", "yes eingeben zum Übernehmen, - zum Zurückgehen"},
	"yes":         {"yes", "ja"},
	"no":          {"no", "nein"},

	// Pages.
	"page.lang":      {"Language", "Sprache"},
	"page.role":      {"This box", "Diese Box"},
	"page.name":      {"Host name", "Hostname"},
	"page.lan":       {"LAN", "LAN"},
	"page.vip":       {"Virtual address", "Virtuelle Adresse"},
	"page.crossover": {"Crossover cable", "Crossover-Kabel"},
	"page.pairing":   {"Pairing", "Kopplung"},
	"page.pin":       {"Admin PIN", "Admin-PIN"},
	"page.time":      {"Time", "Zeit"},
	"page.ext":       {"Extensions", "Nebenstellen"},
	"page.trunk":     {"PSTN trunk", "Amtsleitung"},
	"page.emergency": {"Emergency numbers", "Notrufnummern"},
	"page.review":    {"Review", "Übersicht"},
	"page.done":      {"Done", "Fertig"},

	// Questions.
	"q.lang":      {"Console language:", "Sprache der Konsole:"},
	"q.role":      {"Which box is this?", "Welche Box ist das?"},
	"role.single": {"A single box (no twin)", "Eine einzelne Box (ohne Zwilling)"},
	"role.a":      {"Box A of a twin pair", "Box A eines Zwillingspaars"},
	"role.b":      {"Box B of a twin pair", "Box B eines Zwillingspaars"},
	"h.role": {"A twin pair is two boxes that stand in for each other. Set up box A first: it shows the pairing code that box B needs.",
		"Ein Zwillingspaar sind zwei Boxen, die füreinander einspringen. Richten Sie zuerst Box A ein: sie zeigt den Kopplungscode, den Box B braucht."},
	"q.name":     {"Host name of this box:", "Hostname dieser Box:"},
	"h.name":     {"Lower-case letters, digits and hyphens, up to 32 characters.", "Kleinbuchstaben, Ziffern und Bindestriche, bis 32 Zeichen."},
	"q.iface":    {"Network interface of the office LAN:", "Netzwerkschnittstelle zum Büro-LAN:"},
	"h.iface":    {"It carries the virtual address, e.g. eth0.", "Sie trägt die virtuelle Adresse, z.B. eth0."},
	"q.lanmode":  {"How does this box get its LAN address?", "Wie bekommt diese Box ihre LAN-Adresse?"},
	"lan.static": {"Static address (recommended)", "Feste Adresse (empfohlen)"},
	"lan.dhcp":   {"DHCP", "DHCP"},
	"q.addr":     {"LAN address of this box with prefix:", "LAN-Adresse dieser Box mit Präfix:"},
	"h.addr":     {"For example 192.168.1.21/24.", "Zum Beispiel 192.168.1.21/24."},
	"q.gateway":  {"Gateway (the office router):", "Gateway (der Router im Büro):"},
	"q.dns":      {"DNS servers (separated by commas):", "DNS-Server (durch Kommas getrennt):"},
	"q.peer":     {"Host name of the twin:", "Hostname des Zwillings:"},
	"q.peeraddr": {"LAN address of the twin:", "LAN-Adresse des Zwillings:"},
	"q.vip":      {"Virtual address the phones use:", "Virtuelle Adresse für die Telefone:"},
	"h.vip": {"A third address in the LAN, held by whichever box is active.",
		"Eine dritte Adresse im LAN, die die gerade aktive Box hält."},
	"q.xlocal": {"Crossover address of this box:", "Crossover-Adresse dieser Box:"},
	"q.xpeer":  {"Crossover address of the twin:", "Crossover-Adresse des Zwillings:"},
	"h.cross": {"The cable between the two boxes; any private addresses not used in the LAN.",
		"Das Kabel zwischen den beiden Boxen; beliebige private Adressen, die im LAN nicht vorkommen."},
	"q.pairshow": {"Pairing code of this pair:", "Kopplungscode dieses Paars:"},
	"h.pairshow": {"Type this code into box B when its setup asks for it. Write it down now.",
		"Geben Sie diesen Code in die Einrichtung von Box B ein. Schreiben Sie ihn jetzt auf."},
	"q.pairtype": {"Pairing code shown on box A:", "Kopplungscode von Box A:"},
	"h.pairtype": {"25 characters; dashes and spaces do not matter.", "25 Zeichen; Bindestriche und Leerzeichen sind egal."},
	"q.pin":      {"Admin PIN for this console:", "Admin-PIN für diese Konsole:"},
	"h.pin": {"At least 6 digits. It unlocks the status console and its actions.",
		"Mindestens 6 Ziffern. Sie entsperrt die Statuskonsole und ihre Aktionen."},
	"q.pin2":         {"The same PIN again:", "Dieselbe PIN noch einmal:"},
	"q.tz":           {"Time zone:", "Zeitzone:"},
	"h.tz":           {"A name like Europe/Berlin or UTC.", "Ein Name wie Europe/Berlin oder UTC."},
	"q.ntp":          {"Time servers (separated by commas, empty for none):", "Zeitserver (durch Kommas getrennt, leer für keine):"},
	"q.ext":          {"Extension numbers:", "Nebenstellennummern:"},
	"h.ext":          {"Single numbers and ranges, e.g. 200-219 or 200,201,300-305. Not 110 or 112: those are emergency numbers.", "Einzelne Nummern und Bereiche, z.B. 200-219 oder 200,201,300-305. Nicht 110 oder 112: das sind Notrufnummern."},
	"q.secrets":      {"SIP passwords of the extensions (shown only now):", "SIP-Passwörter der Nebenstellen (nur jetzt angezeigt):"},
	"q.csv":          {"Save them as extensions.csv in the data folder?", "Als extensions.csv im Datenordner speichern?"},
	"more":           {"… and %d more (in extensions.csv)", "… und %d weitere (in extensions.csv)"},
	"q.trunk":        {"Line to the telephone network:", "Leitung ins Telefonnetz:"},
	"trunk.none":     {"None", "Keine"},
	"trunk.bri-ptp":  {"ISDN BRI, point-to-point (DDI range)", "ISDN-Basisanschluss, Anlagenanschluss (Durchwahl)"},
	"trunk.bri-ptmp": {"ISDN BRI, point-to-multipoint (MSNs)", "ISDN-Basisanschluss, Mehrgeräteanschluss (MSNs)"},
	"trunk.pri":      {"ISDN PRI / E1 (DDI range)", "ISDN-Primärmultiplexanschluss / E1 (Durchwahl)"},
	"trunk.sip":      {"SIP trunk at a provider", "SIP-Trunk bei einem Anbieter"},
	"q.msns":         {"MSNs of the line (separated by commas):", "MSNs des Anschlusses (durch Kommas getrennt):"},
	"q.ddi":          {"Direct-dial-in range:", "Durchwahlbereich:"},
	"h.ddi":          {"For example 200-299.", "Zum Beispiel 200-299."},
	"q.registrar":    {"Provider's registrar:", "Registrar des Anbieters:"},
	"q.user":         {"User name at the provider:", "Benutzername beim Anbieter:"},
	"q.password":     {"Password at the provider:", "Passwort beim Anbieter:"},
	"q.emergency":    {"Emergency numbers (always to the telephone network):", "Notrufnummern (immer ins Telefonnetz):"},
	"q.review":       {"Please check before applying:", "Bitte vor dem Übernehmen prüfen:"},

	// Review lines.
	"r.role":      {"This box", "Diese Box"},
	"r.name":      {"Host name", "Hostname"},
	"r.lan":       {"LAN", "LAN"},
	"r.twin":      {"Twin", "Zwilling"},
	"r.vip":       {"Virtual address", "Virtuelle Adresse"},
	"r.cross":     {"Crossover", "Crossover"},
	"r.pairing":   {"Pairing code", "Kopplungscode"},
	"r.time":      {"Time", "Zeit"},
	"r.ext":       {"Extensions", "Nebenstellen"},
	"r.trunk":     {"Trunk", "Amtsleitung"},
	"r.emergency": {"Emergency", "Notruf"},
	"r.pin":       {"Admin PIN", "Admin-PIN"},
	"r.pinset":    {"set (stored hashed)", "gesetzt (als Hash gespeichert)"},
	"r.count":     {"%d (%s)", "%d (%s)"},
	"r.gw":        {"gateway %s", "Gateway %s"},
	"r.dns":       {"DNS %s", "DNS %s"},

	// Results.
	"applying":   {"Applying…", "Wird übernommen…"},
	"applied":    {"The configuration is stored.", "Die Konfiguration ist gespeichert."},
	"csv.saved":  {"Extension passwords saved to %s.", "Passwörter der Nebenstellen gespeichert in %s."},
	"apply.fail": {"Applying failed: %s", "Übernehmen fehlgeschlagen: %s"},
	"next.b": {"Now set up box B with the pairing code, then start both with `twinpbx run`.",
		"Richten Sie jetzt Box B mit dem Kopplungscode ein und starten Sie dann beide mit `twinpbx run`."},
	"next.run": {"Start the PBX with `twinpbx run`, or it picks up the change if it runs.",
		"Starten Sie die Telefonanlage mit `twinpbx run`; läuft sie schon, übernimmt sie die Änderung."},

	// Validation.
	"e.pair.typo":    {"pairing code: it has a typo (its check character does not match); compare it with the twin's console", "Kopplungscode: er enthält einen Tippfehler (das Prüfzeichen passt nicht); vergleichen Sie ihn mit der Konsole des Zwillings."},
	"e.pair.char":    {"pairing code: %q at position %d is not a pairing code character (0-9 and A-Z without I, L, O, U)", "Kopplungscode: %q an Stelle %d kommt in Kopplungscodes nicht vor (0-9 und A-Z ohne I, L, O, U)."},
	"e.pair.len":     {"pairing code: a pairing code has 25 characters", "Kopplungscode: ein Kopplungscode hat 25 Zeichen."},
	"e.choice":       {"Please choose one of 1 to %d.", "Bitte eine von 1 bis %d wählen."},
	"e.empty":        {"Please enter a value.", "Bitte einen Wert eingeben."},
	"e.name":         {"%q: use lower-case letters, digits and hyphens (up to 32, not starting or ending with a hyphen).", "%q: nur Kleinbuchstaben, Ziffern und Bindestriche (bis 32, nicht am Anfang oder Ende)."},
	"e.iface":        {"%q is not an interface name (up to 15 characters, no spaces or slashes).", "%q ist kein Schnittstellenname (bis 15 Zeichen, ohne Leerzeichen und Schrägstriche)."},
	"e.prefix":       {"%q is not an address with prefix, e.g. 192.168.1.21/24.", "%q ist keine Adresse mit Präfix, z.B. 192.168.1.21/24."},
	"e.prefixnet":    {"%s is the network itself; give this box's own address in it.", "%s ist das Netz selbst; geben Sie die eigene Adresse der Box darin an."},
	"e.addr":         {"%q is not an IP address.", "%q ist keine IP-Adresse."},
	"e.subnet":       {"%s is not in this box's subnet %s.", "%s liegt nicht im Subnetz %s dieser Box."},
	"e.isself":       {"%s is this box's own address.", "%s ist die eigene Adresse dieser Box."},
	"e.vipnode":      {"%s is a box's own address; the virtual address must be a third address.", "%s ist die Adresse einer Box; die virtuelle Adresse muss eine dritte sein."},
	"e.vipgw":        {"%s is the gateway's address.", "%s ist die Adresse des Gateways."},
	"e.samepeer":     {"The twin needs a name of its own, not %q.", "Der Zwilling braucht einen eigenen Namen, nicht %q."},
	"e.xsame":        {"Both ends of the crossover cable need different addresses.", "Die beiden Enden des Crossover-Kabels brauchen verschiedene Adressen."},
	"e.xlan":         {"%s is in the LAN %s; the crossover cable needs addresses outside it.", "%s liegt im LAN %s; das Crossover-Kabel braucht Adressen außerhalb."},
	"e.xnet":         {"%s is not in the same /24 as this box's crossover address %s.", "%s liegt nicht im selben /24 wie die Crossover-Adresse %s dieser Box."},
	"w.gateway":      {"Warning: the gateway %s did not answer. Is the cable plugged in and the address right?", "Warnung: das Gateway %s antwortet nicht. Steckt das Kabel, stimmt die Adresse?"},
	"e.pin.missing":  {"Please enter a PIN.", "Bitte eine PIN eingeben."},
	"e.pin.digits":   {"The PIN is digits only.", "Die PIN besteht nur aus Ziffern."},
	"e.pin.short":    {"The PIN needs at least 6 digits.", "Die PIN braucht mindestens 6 Ziffern."},
	"e.pin.long":     {"The PIN has at most 12 digits.", "Die PIN hat höchstens 12 Ziffern."},
	"e.pin.weak":     {"This PIN is too easy to guess (like 123456 or 000000); choose another.", "Diese PIN ist zu leicht zu erraten (wie 123456 oder 000000); bitte eine andere."},
	"e.pin.mismatch": {"The two PINs differ; enter the PIN again.", "Die beiden PINs unterscheiden sich; bitte erneut eingeben."},
	"e.tz":           {"%q is not a time zone like Europe/Berlin.", "%q ist keine Zeitzone wie Europe/Berlin."},
	"e.host":         {"%q is neither an IP address nor a host name.", "%q ist weder eine IP-Adresse noch ein Hostname."},
	"e.ext.syntax":   {"%q is not a number or a range like 100-119.", "%q ist keine Nummer und kein Bereich wie 100-119."},
	"e.ext.digits":   {"%q: extension numbers have 2 to 8 digits.", "%q: Nebenstellen haben 2 bis 8 Ziffern."},
	"e.ext.range":    {"%q: the first number is above the last.", "%q: die erste Nummer ist größer als die letzte."},
	"e.ext.dup":      {"Extension %s is listed twice.", "Nebenstelle %s ist doppelt angegeben."},
	"e.ext.many":     {"%d extensions: at most %d at once.", "%d Nebenstellen: höchstens %d auf einmal."},
	"e.number":       {"%q is not a number.", "%q ist keine Nummer."},
	"e.em.ext":       {"%s is also an extension; an emergency number must go to the telephone network.", "%s ist auch eine Nebenstelle; eine Notrufnummer muss ins Telefonnetz gehen."},
	"e.em.dup":       {"%s is listed twice.", "%s ist doppelt angegeben."},
	"e.msn.many":     {"A BRI line has at most 10 MSNs.", "Ein Basisanschluss hat höchstens 10 MSNs."},
	"e.ddi":          {"%q is not a range like 200-299 with both ends the same length.", "%q ist kein Bereich wie 200-299 mit gleich langen Enden."},
	"e.config":       {"The resulting configuration is not valid: %s", "Die entstandene Konfiguration ist ungültig: %s"},

	// Dashboard.
	"d.title":       {"twinpbx console", "twinpbx Konsole"},
	"d.locked":      {"Locked. Admin PIN:", "Gesperrt. Admin-PIN:"},
	"d.badpin":      {"Wrong PIN.", "Falsche PIN."},
	"d.lockout":     {"Too many wrong PINs; wait %d s.", "Zu viele falsche PINs; bitte %d s warten."},
	"d.nopin":       {"No admin PIN is set: run `twinpbx setup` to set one.", "Keine Admin-PIN gesetzt: mit `twinpbx setup` eine setzen."},
	"d.connecting":  {"Connecting…", "Verbinde…"},
	"d.unreachable": {"No status: %s", "Kein Status: %s"},
	"d.node":        {"Node %s   role %s   config v%d", "Knoten %s   Rolle %s   Konfiguration v%d"},
	"d.listeners":   {"Listening: %s", "Hört auf: %s"},
	"d.phones":      {"Registered phones: %d", "Angemeldete Telefone: %d"},
	"d.calls":       {"Calls in progress: %d", "Laufende Gespräche: %d"},
	"d.twin":        {"Twin %s: %s", "Zwilling %s: %s"},
	"d.twin.silent": {"silent", "stumm"},
	"d.paths":       {"Heartbeat: %s", "Herzschlag: %s"},
	"d.path.down":   {"%s down", "%s getrennt"},
	"d.path.up":     {"%s %s", "%s %s"},
	"d.repl":        {"Replication: %s", "Replikation: %s"},
	"d.wd":          {"watchdog %s ok (%s)", "Watchdog %s ok (%s)"},
	"d.wd.fenced":   {"watchdog %s FENCED: reset within %s", "Watchdog %s ABGESCHALTET: Neustart binnen %s"},
	"d.wd.none":     {"watchdog: NONE (a hang is not reset)", "Watchdog: KEINER (kein Neustart bei Hänger)"},
	"d.repl.sync":   {"in sync", "synchron"},
	"d.repl.lag":    {"%d changes behind", "%d Änderungen zurück"},
	"d.repl.off":    {"not connected", "nicht verbunden"},
	"d.vip":         {"Virtual address: %s", "Virtuelle Adresse: %s"},
	"d.vip.here":    {"held by this box", "bei dieser Box"},
	"d.vip.there":   {"not on this box", "nicht bei dieser Box"},
	"d.relay":       {"PSTN relay: %s", "Amtsrelais: %s"},
	"d.unknown":     {"unknown", "unbekannt"},
	"d.maint":       {"Maintenance mode is on.", "Wartungsmodus ist an."},
	"d.failovers":   {"Last role changes:", "Letzte Rollenwechsel:"},
	"d.watchdog":    {"Monitors: %s", "Überwachung: %s"},
	"d.alarms":      {"Alarms:", "Alarme:"},
	"d.noalarm":     {"No alarms.", "Keine Alarme."},
	"d.data":        {"Data partition: %s", "Datenpartition: %s"},
	"d.keys":        {"s switchover  m maintenance  u update pair  e export config  p restart PBX  b reboot  d DNS SRV  f factory reset  q quit", "s Umschalten  m Wartung  u Paar aktualisieren  e Konfig exportieren  p PBX neu starten  b Neustart  d DNS-SRV  f Werksreset  q Ende"},
	"d.reset.warn":  {"Factory reset wipes the config, extensions, CDRs and logs of this box and reboots into the setup wizard.", "Der Werksreset löscht Konfiguration, Nebenstellen, Verbindungsdaten und Protokolle dieser Box und startet neu in die Einrichtung."},
	"d.dns.domain":  {"Domain of the site (Enter alone: the SIP realm):", "Domain des Standorts (nur Enter: der SIP-Realm):"},
	"d.trunk":       {"Trunk %s (%s): %s", "Amtsleitung %s (%s): %s"},
	"d.trunk.calls": {", calls: %d", ", Gespräche: %d"},
	"d.isdn":        {"ISDN %s (trunk %s): %s", "ISDN %s (Amtsleitung %s): %s"},
	"d.isdn.up":     {"line up", "Leitung aktiv"},
	"d.isdn.down":   {"LINE DOWN%s", "LEITUNG AUSGEFALLEN%s"},
	"d.isdn.err":    {"not running: %s", "läuft nicht: %s"},
	"d.reset.pin":   {"Admin PIN:", "Admin-PIN:"},
	"d.reset.word":  {"Type %s to wipe this box:", "%s eingeben, um diese Box zu löschen:"},
	"d.reset.esc":   {"Enter: next   Esc: cancel", "Enter: weiter   Esc: abbrechen"},
	"d.cancelled":   {"%s cancelled.", "%s abgebrochen."},
	"d.rebooting":   {"Rebooting…", "Neustart…"},
	"d.resetting":   {"Wiping the data and rebooting into the setup wizard…", "Daten werden gelöscht; Neustart in die Einrichtung…"},
	"d.page.back":   {"Any key: back", "Beliebige Taste: zurück"},
	"d.more":        {"… and %d more lines", "… und %d weitere Zeilen"},
	"d.na":          {"%s: only on a twin pair.", "%s: nur bei einem Zwillingspaar."},
	"d.confirm":     {"%s? Press y to confirm, any other key to cancel.", "%s? y zum Bestätigen, jede andere Taste bricht ab."},
	"d.exported":    {"Config exported to %s.", "Konfiguration exportiert nach %s."},
	"d.failed":      {"%s failed: %s", "%s fehlgeschlagen: %s"},
	"a.switchover":  {"Switchover", "Umschalten"},
	"a.rollout":     {"Rolling update of the pair to the update stick's version", "Paar auf die Version des Update-Sticks aktualisieren"},
	"a.maint.on":    {"Maintenance mode on", "Wartungsmodus an"},
	"a.maint.off":   {"Maintenance mode off", "Wartungsmodus aus"},
	"a.export":      {"Export config", "Konfiguration exportieren"},
	"a.restart":     {"Restart PBX", "PBX neu starten"},
	"a.reboot":      {"Reboot", "Neustart"},
	"a.dns":         {"DNS SRV records", "DNS-SRV-Einträge"},
	"a.reset":       {"Factory reset", "Werksreset"},
	"d.standalone":  {"single box", "Einzelbox"},
}
