// The web app's main journeys in a real browser: Debian's Chromium driven by playwright-core
// (which never downloads a browser), against the server the Rust test started (`tests/api/
// web_app.rs` passes BASE_URL, an admin's credentials and where screenshots go).
//
// People register, log in, publish an event with two seats; two others take them, a third is
// waitlisted at position 1, one withdraws, the third is promoted and sees it; a capacity change
// promotes the next; the promoted one finds a notification (an unread count in the header) and
// switches that mail off; an admin deletes a user and the seats update; a forgotten password is
// reset from the mailed link (read from the .eml files the app wrote: MAIL_DIRS). Along the way: validation
// beside fields, staying logged in across reloads, refresh-token rotation and reuse, 401 → login
// → back, 429 and 503 and an unreachable API, user text that stays text, accessibility (axe-core)
// and screenshots at phone and desktop widths.

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const BASE = process.env.BASE_URL;
const SHOTS = process.env.SCREENSHOTS ?? 'target/screenshots';
const ADMIN = { email: process.env.ADMIN_EMAIL, password: process.env.ADMIN_PASSWORD };
assert.ok(BASE && ADMIN.email && ADMIN.password, 'BASE_URL, ADMIN_EMAIL and ADMIN_PASSWORD are required');
mkdirSync(SHOTS, { recursive: true });
rmSync(`${SHOTS}/failure.png`, { force: true });
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const run = Math.random().toString(36).slice(2, 8);
const PASSWORD = 'correct horse battery';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
const problems = []; // what no step may leave behind: script errors, CSP violations, foreign requests

function step(name) {
  console.log(`· ${name}`);
}

/** A person with a browser context of their own (their own localStorage, maybe their own zone). */
async function person(name, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`${name}: script error: ${e.message}`));
  page.on('request', (r) => {
    if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) problems.push(`${name}: request to ${r.url()}`);
  });
  page.on('dialog', async (d) => {
    if (d.type() === 'confirm') return d.accept();
    problems.push(`${name}: unexpected ${d.type()} dialog: ${d.message()}`);
    return d.dismiss();
  });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  page.on('console', (m) => {
    // A refused call is logged by the browser itself ("Failed to load resource"): expected here.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      problems.push(`${name}: console error: ${m.text()}`);
    }
  });
  const email = `${name.toLowerCase()}-${run}@example.test`;
  return { name, email, password: PASSWORD, context, page };
}

const text = (page, selector) => page.locator(selector).first().innerText();

/** Waits until `selector`'s text contains `expected`. */
async function sees(page, expected, selector = 'main') {
  lastPage = page;
  await page.locator(selector).filter({ hasText: expected }).first().waitFor({ timeout: 10000 })
    .catch(async () => assert.fail(`expected "${expected}" in ${selector}, found: ${await text(page, selector)}`));
}

/** Waits until the app has rendered the screen (it marks <main> busy until then). */
async function settled(page) {
  lastPage = page;
  await page.locator('main[aria-busy]').waitFor({ state: 'detached' });
}

async function go(page, hash) {
  lastPage = page;
  await page.goto(`${BASE}/${hash}`);
  await settled(page);
}

async function register(who) {
  await go(who.page, '#/register');
  await who.page.getByLabel('Name').fill(who.name);
  await who.page.getByLabel('Email', { exact: true }).fill(who.email);
  await who.page.getByLabel('Password', { exact: true }).fill(who.password);
  await who.page.getByRole('button', { name: 'Create account' }).click();
  await who.page.getByRole('button', { name: 'Log out' }).waitFor();
}

async function logIn(who, email = who.email, password = who.password) {
  await who.page.getByLabel('Email', { exact: true }).fill(email);
  await who.page.getByLabel('Password', { exact: true }).fill(password);
  await who.page.getByRole('button', { name: 'Log in' }).click();
}

/** axe-core's serious and critical findings on the current screen: there must be none. */
async function accessible(page, screen) {
  await page.evaluate(AXE); // through the DevTools protocol: the page's CSP does not apply
  const found = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
  });
  assert.deepEqual(found, [], `accessibility of ${screen}`);
}

/**
 * Desktop and phone-width screenshots of the current screen, checked at both widths: nothing
 * scrolls sideways, every control stays inside its card or form, the message banner lines up.
 */
async function shoot(page, screen) {
  await laidOut(page, `${screen} at 1280 px`);
  await page.screenshot({ path: `${SHOTS}/${screen}-desktop.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${SHOTS}/${screen}-phone.png`, fullPage: true });
  await laidOut(page, `${screen} at 390 px`);
  await page.setViewportSize({ width: 1280, height: 900 });
}

async function laidOut(page, where) {
  const found = await page.evaluate(() => {
    const wrong = [];
    const overflow = document.documentElement.scrollWidth - window.innerWidth;
    if (overflow > 0) wrong.push(`the page scrolls sideways (${overflow} px too wide)`);
    for (const control of document.querySelectorAll('main input, main select, main textarea, main button')) {
      const box = control.closest('.card, form');
      if (!box || control.offsetParent === null) continue; // hidden
      const c = control.getBoundingClientRect();
      const b = box.getBoundingClientRect();
      if (c.left < b.left - 0.5 || c.right > b.right + 0.5) {
        wrong.push(`${control.name || control.textContent} spans ${Math.round(c.left)}–${Math.round(c.right)} px, its box ${Math.round(b.left)}–${Math.round(b.right)}`);
      }
    }
    const flash = document.getElementById('flash');
    const heading = document.querySelector('main h1');
    if (flash.textContent && heading) {
      const [f, m] = [flash, heading].map((e) => Math.round(e.getBoundingClientRect().left));
      if (f !== m) wrong.push(`the message banner starts at ${f} px, the screen at ${m}`);
    }
    return wrong;
  });
  assert.deepEqual(found, [], where);
}

/** Reloads `hash` until it shows `expected` (what arrives by a domain event takes a moment). */
async function eventually(page, hash, expected) {
  for (let i = 0; i < 50; i += 1) {
    await go(page, hash);
    await page.reload(); // going to the address shown changes nothing: load it again
    await settled(page);
    if ((await text(page, 'main')).includes(expected)) return;
    await page.waitForTimeout(200);
  }
  await sees(page, expected);
}

/** The link of the newest mail to `email` among the .eml files the app wrote (MAIL_DIRS). */
async function mailedLink(email) {
  const dirs = (process.env.MAIL_DIRS ?? '').split(':').filter(Boolean);
  for (let i = 0; i < 100; i += 1) {
    for (const dir of dirs) {
      let names = [];
      try { names = readdirSync(dir).filter((n) => n.endsWith('.eml')); } catch { continue; }
      for (const name of names) {
        // Quoted-printable soft breaks and escapes undone: the link as a mail client shows it.
        const raw = readFileSync(join(dir, name), 'utf8');
        const mail = raw.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_, x) => String.fromCharCode(parseInt(x, 16)));
        if (!mail.includes(email)) continue;
        const found = mail.match(/https?:\/\/\S+#\/reset\?token=[A-Za-z0-9_-]+/);
        if (found) return found[0].replace(/^https?:\/\/[^/]+/, BASE);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`no reset mail to ${email} in ${dirs.join(', ')}`);
}

function tomorrowAt(hour) {
  const d = new Date(Date.now() + 24 * 3600 * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(hour)}:00`;
}

// ---------------------------------------------------------------------------------------------

let lastPage = null; // the page of the step that failed, for its screenshot
try {
  step('the page is served with a policy that forbids inline script');
  {
    const response = await fetch(`${BASE}/`);
    const csp = response.headers.get('content-security-policy');
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  }

  step('a visitor\'s first screen says what rsvp is and what to do first; "Log in" is a few Tabs away');
  const guest = await person('Guest');
  await guest.page.goto(`${BASE}/`);
  await settled(guest.page);
  await sees(guest.page, 'keep your seat', '.welcome');
  assert.equal(await guest.page.locator('.steps li').count(), 3, 'how it works, in three steps');
  await guest.page.getByRole('link', { name: 'Create a free account' }).waitFor();
  // The first screen leaves the focus at the start: skip link, brand, "Events", "Log in".
  for (let tabs = 0; ; tabs += 1) {
    assert.ok(tabs < 5, '"Log in" in the header is a few Tabs from the start of the first screen');
    await guest.page.keyboard.press('Tab');
    if (await guest.page.evaluate(() => document.activeElement.textContent) === 'Log in') break;
  }

  const olga = await person('Olga');
  step('an organiser registers and stays logged in across a reload');
  await register(olga);
  await olga.page.reload();
  await settled(olga.page);
  await olga.page.getByRole('button', { name: 'Log out' }).waitFor();
  await olga.page.getByRole('link', { name: 'Olga' }).waitFor();
  assert.equal(await olga.page.getByRole('link', { name: 'Users' }).count(), 0, 'no admin link for a member');

  step('validation errors appear beside the fields');
  await go(olga.page, '#/events/new');
  await olga.page.getByRole('button', { name: 'Publish event' }).click();
  await olga.page.locator('#f-title-error:not(:empty)').waitFor();
  assert.equal(await text(olga.page, '#f-starts_at-error'), 'Required.');
  assert.equal(await olga.page.evaluate(() => document.activeElement.id), 'f-title', 'the first invalid field has the focus');
  // The server's rules, from the problem's `errors`: each beside its field.
  await olga.page.getByLabel('Title').fill('x'.repeat(201));
  await olga.page.getByLabel('Starts').fill('2020-01-01T10:00');
  await olga.page.getByLabel('Ends').fill('2019-01-01T10:00');
  await olga.page.getByLabel('Seats').fill('0');
  await olga.page.getByRole('button', { name: 'Publish event' }).click();
  await olga.page.locator('#f-capacity-error:not(:empty)').waitFor();
  for (const [name, says] of [['title', '1 to 200'], ['starts_at', 'future'], ['ends_at', 'after'], ['capacity', 'between']]) {
    assert.match(await text(olga.page, `#f-${name}-error`), new RegExp(says), name);
    assert.equal(await olga.page.getAttribute(`#f-${name}`, 'aria-invalid'), 'true', name);
  }
  await accessible(olga.page, 'new event with errors');
  await shoot(olga.page, 'new-event-errors');

  step('an event with two seats is published');
  await olga.page.getByLabel('Title').fill('Rust & Coffee');
  await olga.page.getByLabel('Description').fill('Talks, then coffee.\nBring a laptop.');
  await olga.page.getByLabel('Location').fill('Berlin');
  await olga.page.getByLabel('Category').fill('Tech');
  await olga.page.getByLabel('Starts').fill(tomorrowAt(18));
  await olga.page.getByLabel('Ends').fill(tomorrowAt(20));
  await olga.page.getByLabel('Seats').fill('2');
  await olga.page.getByRole('button', { name: 'Publish event' }).click();
  await olga.page.getByRole('heading', { name: 'Rust & Coffee' }).waitFor();
  await sees(olga.page, '0 of 2 seats taken');
  await sees(olga.page, 'Your event is published.', '#flash');
  await sees(olga.page, 'Nobody has signed up yet.');
  const eventHash = new URL(olga.page.url()).hash;
  await laidOut(olga.page, 'the event page with a message');

  step('the first screen lists the event, its day at the venue on a calendar leaf');
  {
    await guest.page.reload();
    await settled(guest.page);
    const card = guest.page.locator('li.card', { hasText: 'Rust & Coffee' });
    await card.waitFor();
    const published = await (await fetch(`${BASE}/api/events/${eventHash.split('/').pop()}`)).json();
    const venueDay = new Intl.DateTimeFormat('en', { day: 'numeric', timeZone: published.time_zone });
    assert.equal(await card.locator('.leaf-day').innerText(), venueDay.format(new Date(published.starts_at)));
    await sees(guest.page, '2 seats left', 'li.card');
    await accessible(guest.page, 'first screen');
    await shoot(guest.page, 'first-screen');
    await guest.context.close();
  }

  step('two people take the seats, a third is waitlisted at position 1');
  const [bea, carl, dora] = await Promise.all(['Bea', 'Carl', 'Dora'].map(person));
  for (const who of [bea, carl, dora]) {
    await register(who);
    await go(who.page, eventHash);
    await sees(who.page, 'You are not registered.');
    // Once the seats are taken the button says where signing up puts you.
    const label = who === dora ? 'Join the waitlist' : 'Sign up';
    await who.page.getByRole('button', { name: label }).click();
    await who.page.locator('[data-state="confirmed"], [data-state="waitlisted"]').waitFor();
    // The button is gone: the focus is on the message that says what happened.
    assert.equal(await who.page.evaluate(() => document.activeElement.id), 'flash', 'the focus after "Sign up"');
  }
  await sees(bea.page, 'You have a seat.');
  await sees(carl.page, 'You have a seat.');
  await sees(dora.page, 'You are on the waitlist, at position 1.');
  await sees(dora.page, 'The event is full: you are on the waitlist, at position 1.', '#flash');
  await olga.page.reload();
  await settled(olga.page);
  await sees(olga.page, '2 of 2 seats taken · 1 on the waitlist');
  assert.equal(await olga.page.locator('tbody tr').count(), 3, 'three attendees listed');
  await sees(olga.page, 'Waitlisted', 'tbody');
  await accessible(olga.page, 'event page (organiser)');
  await shoot(olga.page, 'event-organiser');

  step('one withdraws; the waitlisted one is promoted and sees it');
  await bea.page.getByRole('button', { name: 'Give up my seat' }).click();
  await sees(bea.page, 'You are not registered.');
  assert.equal(await bea.page.evaluate(() => document.activeElement.id), 'flash', 'the focus after "Give up my seat"');
  await eventually(dora.page, '#/me/registrations', 'You got a seat from the waitlist.');
  await sees(dora.page, 'Rust & Coffee');
  await accessible(dora.page, 'my registrations');
  await shoot(dora.page, 'my-registrations');

  step('a calendar link: made once, read by a calendar app, stopped');
  await dora.page.getByRole('button', { name: 'Get a calendar link' }).click();
  const feedUrl = await dora.page.getByLabel(/Your calendar link/).inputValue();
  assert.match(feedUrl, /\/api\/calendar\/[A-Za-z0-9_-]{43}\.ics$/);
  const feed = await (await fetch(`${BASE}${new URL(feedUrl).pathname}`)).text();
  assert.match(feed, /BEGIN:VCALENDAR/);
  assert.match(feed, /SUMMARY:Rust & Coffee/);
  await dora.page.getByRole('button', { name: 'Stop my calendar link' }).click();
  await sees(dora.page, 'Your calendar link no longer works.');
  assert.equal((await fetch(`${BASE}${new URL(feedUrl).pathname}`)).status, 404);

  step('the promoted one is told: an unread count in the header, the notification, mail settings');
  await eventually(dora.page, '#/notifications', 'You got a seat: Rust & Coffee');
  await dora.page.getByRole('link', { name: 'Notifications 1 unread' }).waitFor();
  await accessible(dora.page, 'notifications');
  await shoot(dora.page, 'notifications');
  await dora.page.getByRole('button', { name: 'Mark as read' }).click();
  await dora.page.getByRole('link', { name: 'Notifications', exact: true }).waitFor();
  await dora.page.getByLabel('A seat for me from a waitlist').uncheck();
  await dora.page.getByRole('button', { name: 'Save' }).click();
  await sees(dora.page, 'Your mail settings are saved.', '#flash');
  await go(dora.page, '#/notifications');
  assert.equal(await dora.page.getByLabel('A seat for me from a waitlist').isChecked(), false);
  assert.equal(await dora.page.getByLabel('An event I signed up for is cancelled').isChecked(), true);

  step('a capacity change promotes the next one; a capacity below the seats taken is refused');
  const eve = await person('Eve');
  await register(eve);
  await go(eve.page, eventHash);
  // By keyboard alone: a new screen focuses its heading; Tab from there to the button (the
  // event is full: "Join the waitlist"), Enter.
  assert.equal(await eve.page.evaluate(() => document.activeElement.tagName), 'H1');
  assert.equal(await eve.page.evaluate(() => document.querySelector('a, button, input').textContent),
    'Skip to content', 'the first tab stop of the page skips the navigation');
  for (let tabs = 0; ; tabs += 1) {
    assert.ok(tabs < 40, '"Join the waitlist" is reachable with Tab');
    await eve.page.keyboard.press('Tab');
    if (await eve.page.evaluate(() => document.activeElement.textContent) === 'Join the waitlist') break;
  }
  await eve.page.keyboard.press('Enter');
  await sees(eve.page, 'You are on the waitlist, at position 1.');
  await go(olga.page, `${eventHash}/edit`);
  await olga.page.getByLabel('Seats').fill('1');
  await olga.page.getByRole('button', { name: 'Save changes' }).click();
  await sees(olga.page, 'seats', '[role=alert]');
  await olga.page.getByLabel('Seats').fill('3');
  await olga.page.getByRole('button', { name: 'Save changes' }).click();
  await sees(olga.page, '3 of 3 seats taken');
  await eventually(eve.page, eventHash, 'You got a seat from the waitlist.');

  step('user text stays text');
  const hostile = '<img src=x onerror=alert(1)>';
  await go(olga.page, '#/events/new');
  await olga.page.getByLabel('Title').fill(hostile);
  await olga.page.getByLabel('Starts').fill(tomorrowAt(9));
  await olga.page.getByLabel('Ends').fill(tomorrowAt(10));
  await olga.page.getByLabel('Seats').fill('5');
  await olga.page.getByRole('button', { name: 'Publish event' }).click();
  await olga.page.getByRole('heading', { name: hostile }).waitFor();
  assert.equal(await olga.page.locator('main img').count(), 0, 'no image element was made');
  await go(olga.page, '#/');
  await olga.page.getByRole('link', { name: hostile }).waitFor();
  assert.equal(await olga.page.locator('main img').count(), 0);

  step('browse: "More" continues a filtered list page by page');
  {
    const { access } = await olga.page.evaluate(() => JSON.parse(localStorage.getItem('rsvp.session')));
    const category = `Paging-${run}`;
    for (let i = 0; i < 23; i += 1) {
      const starts = new Date(Date.now() + (72 + i) * 3600 * 1000); // after the journey's events
      const response = await fetch(`${BASE}/api/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${access}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          title: `Session ${String(i + 1).padStart(2, '0')}`, category, capacity: 10,
          starts_at: starts.toISOString(), ends_at: new Date(starts.getTime() + 3600 * 1000).toISOString(),
        }),
      });
      assert.equal(response.status, 201);
    }
    await go(olga.page, `#/?category=${category.toLowerCase()}`);
    assert.equal(await olga.page.locator('main li.card').count(), 20, 'a first page of 20');
    await olga.page.getByRole('button', { name: 'More' }).click();
    await olga.page.getByRole('link', { name: 'Session 23' }).waitFor();
    assert.equal(await olga.page.locator('main li.card').count(), 23);
    assert.equal(await olga.page.evaluate(() => document.activeElement.textContent), 'Session 21',
      'the focus after "More" is on the first event it added');
    assert.equal(await olga.page.getByRole('button', { name: 'More' }).isVisible(), false, 'no more pages');
  }

  step('browse: filters, cancelled events marked, empty states');
  await go(olga.page, '#/?location=berlin');
  await olga.page.getByRole('link', { name: 'Rust & Coffee' }).waitFor();
  await accessible(olga.page, 'browse');
  await shoot(olga.page, 'browse');
  await go(olga.page, '#/?location=nowhere-' + run);
  await sees(olga.page, 'No upcoming events match.');
  await olga.page.getByRole('link', { name: hostile }).waitFor({ state: 'detached' });
  await go(olga.page, '#/');
  await olga.page.getByRole('link', { name: hostile }).click();
  await olga.page.getByRole('button', { name: 'Cancel event' }).click();
  await sees(olga.page, 'This event was cancelled.');
  await go(olga.page, '#/?show=cancelled');
  await olga.page.locator('li', { hasText: hostile }).getByText('Cancelled').waitFor();
  await go(olga.page, '#/?show=past');
  await sees(olga.page, 'No past events match.');

  step('an organiser\'s page lists their upcoming and past events');
  await go(olga.page, '#/');
  await olga.page.getByRole('link', { name: 'Rust & Coffee' }).click();
  // The organiser's name on the event page (the header's "Olga" is the account).
  await olga.page.locator('article').getByRole('link', { name: 'Olga' }).click();
  await olga.page.getByRole('heading', { name: 'Events by Olga' }).waitFor();
  await olga.page.getByRole('link', { name: 'Rust & Coffee' }).waitFor();
  await sees(olga.page, 'No past events.');
  await accessible(olga.page, 'organiser page');

  step('an admin deletes a user and the seats update');
  const admin = await person('Admin');
  await go(admin.page, '#/login');
  await logIn(admin, ADMIN.email, ADMIN.password);
  await admin.page.getByRole('link', { name: 'Users' }).click();
  await admin.page.getByLabel('Email', { exact: true }).fill('bea-');
  await admin.page.getByRole('button', { name: 'Find' }).click();
  assert.match(await text(admin.page, '#f-email-error'), /whole address/);
  await admin.page.getByLabel('Email', { exact: true }).fill(carl.email);
  await admin.page.getByRole('button', { name: 'Find' }).click();
  await admin.page.getByRole('cell', { name: carl.email, exact: true }).waitFor();
  assert.equal(await admin.page.locator('tbody tr').count(), 1, 'the search finds one account');
  await accessible(admin.page, 'admin users');
  await shoot(admin.page, 'admin-users');
  await admin.page.getByRole('button', { name: `Delete ${carl.email}` }).click();
  await sees(admin.page, `${carl.email} is deleted.`, '#flash');
  await sees(admin.page, 'No account has this email.');
  for (let tries = 0; ; tries += 1) {
    await go(olga.page, eventHash);
    if ((await text(olga.page, '[data-seats]')).startsWith('2 of 3 seats taken')) break;
    assert.ok(tries < 40, `seats after the deletion: ${await text(olga.page, '[data-seats]')}`);
    await olga.page.waitForTimeout(250);
  }
  assert.equal(await olga.page.getByRole('cell', { name: 'Carl' }).count(), 0, 'Carl left the attendee list');

  step('a 401 sends to the login and back');
  const visitor = await person('Visitor');
  await go(visitor.page, '#/me/registrations');
  await visitor.page.getByRole('heading', { name: 'Log in' }).waitFor();
  await accessible(visitor.page, 'login');
  await shoot(visitor.page, 'login');
  await logIn(visitor, dora.email, dora.password);
  await visitor.page.getByRole('heading', { name: 'My registrations' }).waitFor();
  await sees(visitor.page, 'You got a seat from the waitlist.');

  step('429 says when to retry; 503 and an unreachable API show a message and a retry');
  const late = await person('Late');
  await late.page.route('**/api/auth/login', (r) => r.fulfill({
    status: 429, headers: { 'retry-after': '42' }, contentType: 'application/problem+json',
    body: JSON.stringify({ type: 'about:blank', title: 'Too Many Requests', status: 429 }),
  }));
  await go(late.page, '#/login');
  await logIn(late, bea.email, bea.password);
  await sees(late.page, 'Try again in 42 seconds.', '[role=alert]');
  await late.page.unroute('**/api/auth/login');
  await late.page.route('**/api/events?*', (r) => r.fulfill({
    status: 503, headers: { 'retry-after': '5' }, contentType: 'application/problem+json',
    body: JSON.stringify({ type: 'about:blank', title: 'Service Unavailable', status: 503, detail: 'the events service is unavailable' }),
  }));
  await go(late.page, '#/');
  await sees(late.page, 'unavailable', '[role=alert]');
  await late.page.unroute('**/api/events?*');
  await late.page.getByRole('button', { name: 'Try again' }).click();
  await late.page.getByRole('link', { name: 'Rust & Coffee' }).waitFor();
  await late.page.route('**/api/events/*', (r) => r.abort('connectionrefused'));
  await go(late.page, eventHash);
  await sees(late.page, 'can not be reached', '[role=alert]');
  await late.page.getByRole('button', { name: 'Try again' }).waitFor();
  await late.page.unroute('**/api/events/*');

  step('refresh tokens rotate across reloads; a reused one logs out cleanly');
  const before = await bea.page.evaluate(() => JSON.parse(localStorage.getItem('rsvp.session')));
  await bea.page.evaluate(() => {
    const s = JSON.parse(localStorage.getItem('rsvp.session'));
    localStorage.setItem('rsvp.session', JSON.stringify({ ...s, expires: 0 })); // as if it expired
  });
  await bea.page.reload();
  await settled(bea.page);
  await bea.page.getByRole('button', { name: 'Log out' }).waitFor();
  const after = await bea.page.evaluate(() => JSON.parse(localStorage.getItem('rsvp.session')));
  assert.notEqual(after.refresh, before.refresh, 'the refresh token was rotated');
  await bea.page.evaluate((used) => {
    const s = JSON.parse(localStorage.getItem('rsvp.session'));
    localStorage.setItem('rsvp.session', JSON.stringify({ ...s, refresh: used, expires: 0 }));
  }, before.refresh);
  await bea.page.reload();
  await settled(bea.page);
  await bea.page.getByRole('link', { name: 'Log in', exact: true }).waitFor();
  assert.equal(await bea.page.evaluate(() => localStorage.getItem('rsvp.session')), null);
  assert.equal(await bea.page.locator('main', { hasText: 'Loading…' }).count(), 0);

  step('account: change name and password, delete with confirmation');
  await go(bea.page, '#/login');
  await logIn(bea);
  await bea.page.getByRole('button', { name: 'Log out' }).waitFor();
  await go(bea.page, '#/account');
  await accessible(bea.page, 'account');
  await shoot(bea.page, 'account');
  const nameForm = bea.page.getByRole('form', { name: 'Change name' });
  await nameForm.getByLabel('Name').fill('Bea B.');
  await nameForm.getByLabel('Current password').fill(bea.password);
  await nameForm.getByRole('button', { name: 'Change name' }).click();
  await bea.page.getByRole('link', { name: 'Bea B.' }).waitFor();
  const passwordForm = bea.page.getByRole('form', { name: 'Change password' });
  await passwordForm.getByLabel('Current password').fill('not my password');
  await passwordForm.getByLabel('New password').fill('another good passphrase');
  await passwordForm.getByRole('button', { name: 'Change password' }).click();
  await passwordForm.locator('[role=alert]:not([hidden]), .field-error:not(:empty)').first().waitFor();
  await passwordForm.getByLabel('Current password').fill(bea.password);
  await passwordForm.getByRole('button', { name: 'Change password' }).click();
  await sees(bea.page, 'Your password is changed.', '#flash');
  bea.password = 'another good passphrase';
  await bea.page.getByRole('button', { name: 'Log out' }).click();
  await bea.page.getByRole('link', { name: 'Log in', exact: true }).waitFor();
  await go(bea.page, '#/login');
  await logIn(bea);
  await bea.page.getByRole('button', { name: 'Log out' }).waitFor();
  await go(bea.page, '#/account');
  const deleteForm = bea.page.getByRole('form', { name: 'Delete account' });
  await deleteForm.getByLabel('Current password').fill(bea.password);
  await deleteForm.getByRole('button', { name: 'Delete my account' }).click();
  await sees(bea.page, 'Your account is deleted.', '#flash');
  await bea.page.getByRole('link', { name: 'Log in', exact: true }).waitFor();
  await go(bea.page, '#/login');
  await logIn(bea);
  await sees(bea.page, 'The email or password is incorrect.', '[role=alert]');

  step('a forgotten password is reset from the mailed link, once');
  const fay = await person('Fay');
  await register(fay);
  await fay.page.getByRole('button', { name: 'Log out' }).click();
  await sees(fay.page, 'You are logged out.', '#flash');
  await go(fay.page, '#/login');
  await fay.page.getByRole('link', { name: 'Forgot your password?' }).click();
  await fay.page.getByRole('heading', { name: 'Forgot your password?' }).waitFor();
  await settled(fay.page);
  await fay.page.getByLabel('Email', { exact: true }).fill(fay.email);
  await fay.page.getByRole('button', { name: 'Mail me a link' }).click();
  await sees(fay.page, 'If an account has this email');
  await accessible(fay.page, 'forgot password');
  const link = await mailedLink(fay.email);
  await fay.page.goto(link);
  await settled(fay.page);
  await sees(fay.page, 'Choose a new password');
  await fay.page.getByLabel('New password').fill('a fresh one, long enough');
  await fay.page.getByRole('button', { name: 'Set the new password' }).click();
  await sees(fay.page, 'Your password is changed. Log in with it.', '#flash');
  await logIn(fay, fay.email, 'a fresh one, long enough');
  await fay.page.getByRole('button', { name: 'Log out' }).waitFor();
  await fay.page.goto(link);
  await settled(fay.page);
  await fay.page.getByLabel('New password').fill('yet another password');
  await fay.page.getByRole('button', { name: 'Set the new password' }).click();
  await sees(fay.page, 'invalid, was used already or has expired', '[role=alert]');

  step('time zones: an event in Berlin published from Tokyo, read from Los Angeles; skipped and repeated hours refused');
  {
    const kenji = await person('Kenji', { timezoneId: 'Asia/Tokyo' });
    await register(kenji);
    await go(kenji.page, '#/events/new');
    assert.equal(await kenji.page.getByLabel('Time zone of the venue').inputValue(), 'Asia/Tokyo', 'the browser\'s zone by default');
    await kenji.page.getByLabel('Title').fill('Hamburg Rust Night');
    await kenji.page.getByLabel('Description').fill('Slides: https://example.org/slides. Not a link: javascript:alert(1)');
    await kenji.page.getByLabel('Time zone of the venue').fill('Europe/Berlin');
    await kenji.page.getByLabel('Seats').fill('10');
    // 02:30 on the night summer time starts does not exist in Berlin; on the night it ends, it
    // happens twice: neither is guessed.
    await kenji.page.getByLabel('Starts').fill('2027-03-28T02:30');
    await kenji.page.getByLabel('Ends').fill('2027-10-31T02:30');
    await kenji.page.getByRole('button', { name: 'Publish event' }).click();
    await kenji.page.locator('#f-ends_at-error:not(:empty)').waitFor();
    assert.match(await text(kenji.page, '#f-starts_at-error'), /does not exist.*Europe\/Berlin/);
    assert.match(await text(kenji.page, '#f-ends_at-error'), /happens twice.*Europe\/Berlin/);
    await kenji.page.getByLabel('Starts').fill(tomorrowAt(19));
    await kenji.page.getByLabel('Ends').fill(tomorrowAt(21));
    await kenji.page.getByRole('button', { name: 'Publish event' }).click();
    await kenji.page.getByRole('heading', { name: 'Hamburg Rust Night' }).waitFor();
    await sees(kenji.page, 'local time in Berlin');
    const id = new URL(kenji.page.url()).hash.split('/').pop();
    // An address in the description is a link that tells its target nothing; nothing else is.
    const slides = kenji.page.locator('.description a');
    assert.equal(await slides.count(), 1);
    assert.equal(await slides.getAttribute('href'), 'https://example.org/slides');
    assert.match(await slides.getAttribute('rel'), /noopener noreferrer/);
    const event = await (await fetch(`${BASE}/api/events/${id}`)).json();
    assert.equal(event.time_zone, 'Europe/Berlin');
    // 19:00 at the venue is the instant Berlin's clocks show 19:00, whatever Tokyo's say.
    const berlinClock = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', hour: '2-digit', minute: '2-digit' });
    assert.equal(berlinClock.format(new Date(event.starts_at)), '19:00', event.starts_at);
    assert.match(await text(kenji.page, 'main'), /19:00|07:00 PM/); // the browser's own way to write it
    assert.match(await text(kenji.page, '[data-viewer-time]'), /Asia\/Tokyo/);

    const lena = await person('Lena', { timezoneId: 'America/Los_Angeles' });
    await go(lena.page, `#/events/${id}`);
    await sees(lena.page, 'local time in Berlin');
    const laClock = new Intl.DateTimeFormat('en-GB', { timeZone: 'America/Los_Angeles', hour: '2-digit', minute: '2-digit' });
    const viewer = await text(lena.page, '[data-viewer-time]');
    assert.match(viewer, /America\/Los_Angeles/);
    assert.ok(viewer.includes(laClock.format(new Date(event.starts_at)).replace(/^0/, '')) || viewer.includes(laClock.format(new Date(event.starts_at))), viewer);
    // Editing keeps the venue's clock: the form shows 19:00 in Berlin, not the editor's time.
    await go(kenji.page, `#/events/${id}/edit`);
    assert.equal((await kenji.page.getByLabel('Starts').inputValue()).slice(11), '19:00');
    assert.equal(await kenji.page.getByLabel('Time zone of the venue').inputValue(), 'Europe/Berlin');
    await accessible(kenji.page, 'event form with a time zone');
    step('search: the beginning of a word, whatever its case and accents');
    await go(kenji.page, '#/');
    await kenji.page.getByLabel('Search').fill('HAMB');
    await kenji.page.getByRole('button', { name: 'Apply' }).click();
    await sees(kenji.page, 'Hamburg Rust Night');
    assert.match(kenji.page.url(), /q=HAMB/);
    await go(kenji.page, '#/?q=nightz');
    await sees(kenji.page, 'No upcoming events match.');

    step('rough edges: whole seats, a full event says it waitlists, a long word wraps, another organiser\'s form, a missing page\'s tab, an empty login, From after To');
    await go(kenji.page, '#/events/new');
    const longWord = 'W'.repeat(200);
    await kenji.page.getByLabel('Title').fill(longWord);
    await kenji.page.getByLabel('Location').fill(`https://example.org/${'x'.repeat(150)}`);
    await kenji.page.getByLabel('Starts').fill(tomorrowAt(10));
    await kenji.page.getByLabel('Ends').fill(tomorrowAt(11));
    await kenji.page.getByLabel('Seats').fill('1.5');
    await kenji.page.getByRole('button', { name: 'Publish event' }).click();
    assert.equal(await text(kenji.page, '#f-capacity-error'), 'Must be a whole number of seats.');
    await kenji.page.getByLabel('Seats').fill('1');
    await kenji.page.getByRole('button', { name: 'Publish event' }).click();
    await kenji.page.getByRole('heading', { name: longWord }).waitFor();
    await kenji.page.getByRole('button', { name: 'Sign up' }).click();
    await sees(kenji.page, 'You have a seat.');
    await shoot(kenji.page, 'long-word'); // fails if the page scrolls sideways at 390 px
    const tinyHash = new URL(kenji.page.url()).hash;
    const mia = await person('Mia');
    await register(mia);
    await go(mia.page, tinyHash);
    await sees(mia.page, 'signing up puts you on its waitlist');
    // A failed attempt's error goes as soon as the next attempt starts.
    let release;
    const held = new Promise((resolve) => { release = resolve; });
    let attempts = 0;
    await mia.page.route('**/api/events/*/registrations', async (r) => {
      if (r.request().method() !== 'POST') return r.continue();
      attempts += 1;
      if (attempts === 1) {
        return r.fulfill({
          status: 503, headers: { 'retry-after': '1' }, contentType: 'application/problem+json',
          body: JSON.stringify({ type: 'about:blank', title: 'Service Unavailable', status: 503, detail: 'the events service is unavailable' }),
        });
      }
      await held;
      return r.continue();
    });
    await mia.page.getByRole('button', { name: 'Join the waitlist' }).click();
    await sees(mia.page, 'unavailable', '#flash');
    assert.equal(await mia.page.getAttribute('#flash', 'data-kind'), 'error');
    await mia.page.getByRole('button', { name: 'Join the waitlist' }).click();
    await mia.page.waitForFunction(() => document.getElementById('flash').textContent === '');
    release();
    await sees(mia.page, 'You are on the waitlist, at position 1.');
    await mia.page.unroute('**/api/events/*/registrations');
    await go(mia.page, `${tinyHash}/edit`);
    await sees(mia.page, 'Only its organiser (or an admin) can change this event.');
    assert.equal(await mia.page.getByLabel('Title').count(), 0, 'no form to fill before the refusal');
    await go(mia.page, '#/events/00000000-0000-7000-8000-000000000000');
    await sees(mia.page, 'This page does not exist');
    assert.equal(await mia.page.title(), 'Not found · rsvp');
    await go(mia.page, '#/?from=2027-02-10&to=2027-02-01');
    await mia.page.getByRole('button', { name: 'Apply' }).click();
    assert.equal(await text(mia.page, '#f-to-error'), 'To must not be before From.');
    await lena.page.goto(`${BASE}/#/login`);
    await settled(lena.page);
    await lena.page.getByRole('button', { name: 'Log in' }).last().click();
    assert.equal(await text(lena.page, '#f-email-error'), 'Required.');
    await Promise.all([kenji.context.close(), lena.context.close(), mia.context.close()]);
  }
} catch (error) {
  // What the failing screen showed: a screenshot and its text, for whoever reads the CI log.
  if (lastPage) {
    await lastPage.screenshot({ path: `${SHOTS}/failure.png`, fullPage: true }).catch(() => {});
    console.error(`screen at the failure (${lastPage.url()}):\n${await lastPage.locator('body').innerText().catch(() => '?')}`);
  }
  console.error(problems.join('\n'));
  await browser.close();
  throw error;
}
await browser.close();
assert.deepEqual(problems, [], 'script errors, CSP violations or requests elsewhere');
console.log('all journeys passed');
