/*
 * pripeer: libpri as the network side of a PRI or of a BRI (point to
 * point or point to multipoint), for twinpbx's interop test. A test program
 * only: built by the Go test into a temporary folder, never linked into
 * the firmware.
 *
 * Usage: pripeer answer|call [pri|bri-ptp|bri-ptmp]   (the D channel is a
 * SOCK_SEQPACKET socket on fd 3, one frame per packet; libpri adds and
 * strips 2 FCS octets.)
 *
 * It prints one line per event on stdout:
 *   UP, RING <calling> <called> <channel>, PROCEEDING, RINGING, ANSWER,
 *   HANGUP_REQ <cause>, HANGUP <cause>, HANGUP_ACK, DONE
 * and exits 0 a second after the call is cleared, 1 on an error, 2 after
 * 20 s.
 */
#include <errno.h>
#include <libpri.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>

static void say(const char *fmt, const char *a, const char *b, int n)
{
	printf(fmt, a, b, n);
	fflush(stdout);
}

static void quiet(struct pri *pri, char *s)
{
	(void)pri;
	fprintf(stderr, "libpri: %s", s);
}

int main(int argc, char **argv)
{
	const char *span = argc == 3 ? argv[2] : "pri";
	if (argc < 2 || argc > 3 || (strcmp(argv[1], "answer") && strcmp(argv[1], "call")) ||
	    (strcmp(span, "pri") && strcmp(span, "bri-ptp") && strcmp(span, "bri-ptmp"))) {
		fprintf(stderr, "usage: pripeer answer|call [pri|bri-ptp|bri-ptmp]\n");
		return 1;
	}
	int calling = !strcmp(argv[1], "call");
	pri_set_error(quiet);
	pri_set_message(quiet);
	struct pri *pri;
	if (!strcmp(span, "pri"))
		pri = pri_new(3, PRI_NETWORK, PRI_SWITCH_EUROISDN_E1);
	else /* pri_new_bri's second argument: 1 point to point, 0 multipoint */
		pri = pri_new_bri(3, !strcmp(span, "bri-ptp"), PRI_NETWORK, PRI_SWITCH_EUROISDN_E1);
	if (!pri) {
		fprintf(stderr, "pri_new failed\n");
		return 1;
	}
	time_t end = time(NULL) + 20;
	struct timeval linger = {0, 0}; /* set when the call is cleared */
	q931_call *call = NULL;
	while (time(NULL) < end) {
		if (linger.tv_sec) {
			/* Keep the link serviced a moment so the last frames go out
			 * and are acknowledged before the socket closes. */
			struct timeval now;
			gettimeofday(&now, NULL);
			if (timercmp(&now, &linger, >))
				return 0;
		}
		fd_set fds;
		FD_ZERO(&fds);
		FD_SET(3, &fds);
		struct timeval tv = {0, 100000}, *next = pri_schedule_next(pri);
		if (next) {
			struct timeval now;
			gettimeofday(&now, NULL);
			long us = (next->tv_sec - now.tv_sec) * 1000000L + (next->tv_usec - now.tv_usec);
			if (us < 0)
				us = 0;
			if (us < 100000) {
				tv.tv_sec = 0;
				tv.tv_usec = us;
			}
		}
		int n = select(4, &fds, NULL, NULL, &tv);
		if (n < 0 && errno != EINTR) {
			perror("select");
			return 1;
		}
		pri_event *e = n > 0 ? pri_check_event(pri) : pri_schedule_run(pri);
		if (!e)
			continue;
		switch (e->e) {
		case PRI_EVENT_DCHAN_UP:
			say("UP\n", "", "", 0);
			if (calling && !call) {
				call = pri_new_call(pri);
				struct pri_sr *sr = pri_sr_new();
				pri_sr_set_channel(sr, 1, 1, 0);
				pri_sr_set_bearer(sr, PRI_TRANS_CAP_SPEECH, PRI_LAYER_1_ALAW);
				pri_sr_set_called(sr, "7001", PRI_NATIONAL_ISDN, 1);
				pri_sr_set_caller(sr, "30123456", NULL, PRI_NATIONAL_ISDN, PRES_ALLOWED_USER_NUMBER_NOT_SCREENED);
				if (pri_setup(pri, call, sr)) {
					fprintf(stderr, "pri_setup failed\n");
					return 1;
				}
				pri_sr_free(sr);
			}
			break;
		case PRI_EVENT_RING:
			say("RING %s %s %d\n", e->ring.callingnum, e->ring.callednum, e->ring.channel);
			call = e->ring.call;
			pri_proceeding(pri, call, e->ring.channel, 0);
			pri_acknowledge(pri, call, e->ring.channel, 0);
			pri_answer(pri, call, e->ring.channel, 0);
			break;
		case PRI_EVENT_PROCEEDING:
			say("PROCEEDING\n", "", "", 0);
			break;
		case PRI_EVENT_RINGING:
			say("RINGING\n", "", "", 0);
			break;
		case PRI_EVENT_ANSWER:
			say("ANSWER\n", "", "", 0);
			pri_hangup(pri, e->answer.call, PRI_CAUSE_NORMAL_CLEARING);
			break;
		case PRI_EVENT_HANGUP_REQ:
			say("HANGUP_REQ%s%s %d\n", "", "", e->hangup.cause);
			pri_hangup(pri, e->hangup.call, e->hangup.cause);
			break;
		case PRI_EVENT_HANGUP:
			say("HANGUP%s%s %d\n", "", "", e->hangup.cause);
			pri_hangup(pri, e->hangup.call, e->hangup.cause);
			say("DONE\n", "", "", 0);
			goto cleared;
		case PRI_EVENT_HANGUP_ACK:
			say("HANGUP_ACK\n", "", "", 0);
			say("DONE\n", "", "", 0);
			goto cleared;
		default:
			say("EVENT %s%s%d\n", pri_event2str(e->e), " ", e->e);
			break;
		}
		continue;
	cleared:
		if (!linger.tv_sec) {
			gettimeofday(&linger, NULL);
			linger.tv_sec += 1;
		}
	}
	fprintf(stderr, "pripeer: timed out\n");
	return 2;
}
