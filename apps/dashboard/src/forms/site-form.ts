/** The "enrol a site" form: checks and body. Pure. */

export interface SiteFormState {
  name: string;
  publicKey: string;
  approve: boolean;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** 32 bytes in canonical padded base64: 43 characters and "=". */
const KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** The pasted key without the whitespace and line breaks a copy from a terminal brings along. */
export function normalizeKey(text: string): string {
  return text.replace(/\s+/g, '');
}

export function validateSiteForm(s: SiteFormState): Partial<Record<'name' | 'publicKey', string>> {
  const e: Partial<Record<'name' | 'publicKey', string>> = {};
  const name = s.name.trim();
  if (!name) e.name = 'required';
  else if (name.length > 100) e.name = 'at most 100 characters';
  else if (!NAME.test(name)) e.name = 'use letters, digits, ".", "_" or "-" (no spaces)';
  const key = normalizeKey(s.publicKey);
  if (!key) e.publicKey = 'paste the public key printed by `confide node keys`';
  else if (!KEY.test(key)) {
    e.publicKey =
      'not an Ed25519 public key: expected 44 base64 characters ending in "=", as printed by `confide node keys`';
  }
  return e;
}

export function siteRequestBody(s: SiteFormState): { name: string; publicKey: string } {
  return { name: s.name.trim(), publicKey: normalizeKey(s.publicKey) };
}
