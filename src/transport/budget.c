/*
 * budget.c - how many bytes clients can make the daemon hold, per connection
 * and daemon-wide: request bytes (bodies being received, decoded messages of
 * requests in progress) and response bytes not yet written.
 *
 * Each connection may hold TRANSPORT_CONN_ALLOWANCE bytes of each kind freely,
 * at most conn_cap in all; what all connections hold beyond their allowances
 * must fit in total_cap. So the daemon holds at most
 *     total_cap + connections x allowance
 * of each kind (docs/security.md states the figures), and small calls still
 * get through while a burst has spent the daemon-wide budget.
 *
 * Requests are charged as their bytes arrive (over budget: the request is
 * refused, see http1.c/http2.c), and the layer above charges what it keeps
 * (a decoded message) with a handle it releases when it lets go, which may
 * be long after the answer, and after the connection died. HTTP/2 ties this to flow control: the
 * connection window equals conn_cap and DATA bytes are given back (WINDOW_UPDATE) only once they
 * are no longer held and the budget has room (h2_regrant), so a client that respects flow control
 * never runs into a refusal on its own connection.
 *
 * Responses are reserved before they are queued (http_response_reserve) and
 * recounted at each flush from what the connection really holds.
 *
 * A charge whose connection died stays counted until it is released; the
 * budget is reference-counted because a charge may outlive the transport.
 *
 * Freed memory is not always returned by malloc (large buffers of a burst end
 * up in the heap, between live allocations), so each time TRIM_AFTER bytes
 * of a burst have drained the transport asks glibc to give the free pages
 * back (malloc_trim, a few ms at most): the steady RSS after an attack is
 * what the daemon holds, not its peak.
 */
#include "transport/internal.h"

#include <malloc.h>

#define TRIM_AFTER ((size_t)8 << 20)

static size_t over(size_t held)
{
    return held > TRANSPORT_CONN_ALLOWANCE ? held - TRANSPORT_CONN_ALLOWANCE : 0;
}

tbudget *budget_new(const transport_limits *l)
{
    tbudget *b = xcalloc(1, sizeof(*b));
    b->refs = 1;
    b->conn_cap = l->conn_buffer_bytes;
    b->total_cap = l->total_buffer_bytes;
    return b;
}

void budget_unref(tbudget *b)
{
    if (b && --b->refs == 0)
        free(b);
}

/* Can a connection holding `held` bytes (of one kind) take n more, when
 * connections hold `over_total` beyond their allowances? */
static budget_verdict fits(const tbudget *b, size_t held, size_t n, size_t over_total)
{
    size_t after = held + n;
    if (after <= TRANSPORT_CONN_ALLOWANCE)
        return BUDGET_OK;
    if (after > b->conn_cap || after < held)
        return BUDGET_CONN_SPENT;
    if (over_total + over(after) - over(held) > b->total_cap)
        return BUDGET_TOTAL_SPENT;
    return BUDGET_OK;
}

/* ---- requests --------------------------------------------------------------- */

static size_t conn_rx(const conn *c)
{
    return c->rx_body + c->rx_decoded;
}

static void note_peak(tbudget *b)
{
    size_t now = b->rx_total + b->tx_total;
    if (now > b->peak)
        b->peak = now;
}

void budget_maybe_trim(tbudget *b)
{
    size_t held = b->rx_total + b->tx_total;
    if (b->peak < held + TRIM_AFTER)
        return;
    malloc_trim(0);
    b->peak = held;
}

static void set_rx(conn *c, size_t body, size_t decoded)
{
    tbudget *b = c->t->budget;
    size_t before = conn_rx(c);
    c->rx_body = body;
    c->rx_decoded = decoded;
    size_t after = conn_rx(c);
    b->rx_over = b->rx_over - over(before) + over(after);
    b->rx_total = b->rx_total - before + after;
    note_peak(b);
}

budget_verdict budget_rx_admit(conn *c, size_t n)
{
    tbudget *b = c->t->budget;
    budget_verdict v = fits(b, conn_rx(c), n, b->rx_over + b->rx_detached);
    if (v != BUDGET_OK)
        b->refused_requests++;
    return v;
}

void budget_rx_add(treq *r, size_t n)
{
    conn *c = r->conn;
    if (!c)
        return;
    r->rx_body += n;
    set_rx(c, c->rx_body + n, c->rx_decoded);
}

void budget_rx_drop_body(treq *r)
{
    size_t n = r->rx_body;
    conn *c = r->conn;
    r->rx_body = 0;
    if (!n || !c)
        return;
    set_rx(c, c->rx_body - n, c->rx_decoded);
    if (c->proto == PROTO_H2)
        h2_body_released(c, r, n);
}

void budget_rx_release(treq *r, size_t n)
{
    conn *c = r->conn;
    if (n > r->rx_body)
        n = r->rx_body;
    r->rx_body -= n;
    if (!n || !c)
        return;
    set_rx(c, c->rx_body - n, c->rx_decoded);
    if (c->proto == PROTO_H2)
        h2_body_released(c, r, n);
}

/* ---- charges held by the layer above --------------------------------------- */

http_charge *budget_charge_new(conn *c, size_t n)
{
    http_charge *ch = xcalloc(1, sizeof(*ch));
    ch->budget = c->t->budget;
    ch->budget->refs++;
    ch->conn = c;
    ch->bytes = n;
    ch->next = c->charges;
    if (c->charges)
        c->charges->prev = ch;
    c->charges = ch;
    set_rx(c, c->rx_body, c->rx_decoded + n);
    return ch;
}

void http_charge_release(http_charge *ch)
{
    if (!ch)
        return;
    conn *c = ch->conn;
    if (c) {
        if (ch->prev)
            ch->prev->next = ch->next;
        else
            c->charges = ch->next;
        if (ch->next)
            ch->next->prev = ch->prev;
        set_rx(c, c->rx_body, c->rx_decoded - ch->bytes);
        if (c->proto == PROTO_H2)
            h2_regrant(c);
    } else {
        ch->budget->rx_detached -= ch->bytes;
        ch->budget->rx_total -= ch->bytes;
    }
    budget_unref(ch->budget);
    free(ch);
}

/* The connection goes away: its charges stay counted, daemon-wide. */
static void detach_charges(conn *c)
{
    tbudget *b = c->t->budget;
    while (c->charges) {
        http_charge *ch = c->charges;
        c->charges = ch->next;
        ch->next = ch->prev = NULL;
        ch->conn = NULL;
        set_rx(c, c->rx_body, c->rx_decoded - ch->bytes);
        b->rx_detached += ch->bytes;
        b->rx_total += ch->bytes;
    }
}

/* ---- responses ------------------------------------------------------------- */

static void set_tx(conn *c, size_t held)
{
    tbudget *b = c->t->budget;
    b->tx_over = b->tx_over - over(c->tx_held) + over(held);
    b->tx_total = b->tx_total - c->tx_held + held;
    c->tx_held = held;
    note_peak(b);
}

budget_verdict budget_tx_admit(conn *c, size_t n)
{
    tbudget *b = c->t->budget;
    budget_verdict v = fits(b, c->tx_held, n, b->tx_over);
    if (v != BUDGET_OK)
        b->refused_responses++;
    return v;
}

void budget_tx_add(conn *c, size_t n)
{
    set_tx(c, c->tx_held + n);
}

void budget_tx_recount(conn *c)
{
    size_t held = c->out.len + c->wbuf.len;
    for (const treq *r = c->reqs; r; r = r->next)
        if (r->responded && !r->serialized_in_out)
            held += r->resp.len - r->resp_off;
    set_tx(c, held);
}

void budget_conn_closed(conn *c)
{
    detach_charges(c);
    set_rx(c, 0, 0);
    set_tx(c, 0);
    c->h2_unconsumed = 0;
}
