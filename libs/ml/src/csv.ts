import { checkDataset, type Dataset } from './dataset';
import { MlError } from './errors';

/** Which columns of a CSV file to read. */
export interface CsvOptions {
  /** Name of the label column; labels must be integers >= 0 (class indices). */
  label: string;
  /** Feature columns in the order the model expects; default: every column but the label, in file order. */
  features?: string[];
  /** If set, the number of feature columns must be exactly this (usually the model's inputDim). */
  expectedFeatures?: number;
}

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const MAX_LABEL = 16_777_215; // largest integer range float32 holds exactly
const MAX_LISTED_COLUMNS = 40;

const quoteValue = (s: string): string =>
  JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}...` : s);

function listColumns(names: string[]): string {
  const shown = names.slice(0, MAX_LISTED_COLUMNS).map((n) => JSON.stringify(n));
  const more = names.length - shown.length;
  return shown.join(', ') + (more > 0 ? `, ... (${more} more)` : '');
}

interface QuotedRecord {
  fields: string[];
  pos: number;
  line: number;
}

function countNewlines(s: string): number {
  let count = 0;
  for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) count++;
  return count;
}

/** Slow path for a record with quotes (RFC 4180: "" escapes a quote, quoted fields may span lines). */
function parseQuotedRecord(text: string, start: number, startLine: number): QuotedRecord {
  const n = text.length;
  const fields: string[] = [];
  let pos = start;
  let line = startLine;
  for (;;) {
    let field = '';
    if (text.charCodeAt(pos) === 34 /* " */) {
      const openLine = line;
      pos++;
      for (;;) {
        const q = text.indexOf('"', pos);
        if (q < 0) {
          throw new MlError(
            'CSV_PARSE',
            `line ${openLine}: a quoted field is never closed (missing ")`,
          );
        }
        const chunk = text.slice(pos, q);
        field += chunk;
        line += countNewlines(chunk);
        if (text.charCodeAt(q + 1) === 34) {
          field += '"';
          pos = q + 2;
        } else {
          pos = q + 1;
          break;
        }
      }
    } else {
      let end = pos;
      while (end < n && text.charCodeAt(end) !== 44 && text.charCodeAt(end) !== 10) end++;
      field = text.slice(pos, end);
      if (field.endsWith('\r')) field = field.slice(0, -1);
      pos = end;
    }
    fields.push(field);
    const c = text.charCodeAt(pos);
    if (c === 44 /* , */) {
      pos++;
    } else if (c === 10 /* \n */) {
      return { fields, pos: pos + 1, line: line + 1 };
    } else if (c === 13 && text.charCodeAt(pos + 1) === 10) {
      return { fields, pos: pos + 2, line: line + 1 };
    } else if (pos >= n) {
      return { fields, pos, line };
    } else {
      throw new MlError(
        'CSV_PARSE',
        `line ${line}: unexpected ${JSON.stringify(text[pos])} after a closing quote ` +
          '(quote the whole field and write a quote inside it as "")',
      );
    }
  }
}

/** Calls `visit` with the fields and starting file line of every non-blank record. */
function forEachRecord(text: string, visit: (fields: string[], line: number) => void): void {
  const n = text.length;
  let pos = text.charCodeAt(0) === 0xfeff ? 1 : 0; // byte-order mark
  let line = 1;
  let nextQuote = text.indexOf('"', pos); // cached: searching per line would be quadratic
  while (pos < n) {
    const recordLine = line;
    let eol = text.indexOf('\n', pos);
    if (eol < 0) eol = n;
    const end = eol > pos && text.charCodeAt(eol - 1) === 13 ? eol - 1 : eol;
    if (nextQuote >= 0 && nextQuote < pos) nextQuote = text.indexOf('"', pos);
    let fields: string[];
    if (nextQuote < 0 || nextQuote >= end) {
      fields = text.slice(pos, end).split(',');
      pos = eol + 1;
      line++;
    } else {
      ({ fields, pos, line } = parseQuotedRecord(text, pos, line));
    }
    if (fields.length === 1 && (fields[0] as string).trim() === '') continue; // blank line
    visit(fields, recordLine);
  }
}

function checkOptions(opts: CsvOptions): void {
  if (typeof opts.label !== 'string' || opts.label.trim() === '') {
    throw new MlError('INVALID_ARGUMENT', 'CSV options: label must name the label column');
  }
  if (opts.features !== undefined && !opts.features.every((f) => typeof f === 'string')) {
    throw new MlError('INVALID_ARGUMENT', 'CSV options: features must be a list of column names');
  }
  const e = opts.expectedFeatures;
  if (e !== undefined && (!Number.isInteger(e) || e < 1)) {
    throw new MlError(
      'INVALID_ARGUMENT',
      `CSV options: expectedFeatures must be a positive integer, got ${e}`,
    );
  }
}

/** Resolves the header to the feature and label column indices, checking the schema. */
function resolveColumns(
  header: string[],
  opts: CsvOptions,
): { featureNames: string[]; featureIndex: number[]; labelIndex: number } {
  const seen = new Map<string, number>();
  header.forEach((name, i) => {
    if (name === '') {
      throw new MlError('CSV_SCHEMA', `header: column ${i + 1} has no name`);
    }
    const previous = seen.get(name);
    if (previous !== undefined) {
      throw new MlError(
        'CSV_SCHEMA',
        `header: column name ${JSON.stringify(name)} appears twice (columns ${previous + 1} and ${i + 1})`,
      );
    }
    seen.set(name, i);
  });
  if (header.every((name) => NUMBER.test(name))) {
    throw new MlError(
      'CSV_SCHEMA',
      'line 1 holds numbers, not column names: the file needs a header line naming its columns',
    );
  }
  const label = opts.label.trim();
  const labelIndex = seen.get(label);
  if (labelIndex === undefined) {
    const hint =
      header.length === 1 && /[;\t]/.test(header[0] as string)
        ? ' (the header has a single column: columns must be separated by commas, not ";" or tabs)'
        : '';
    throw new MlError(
      'CSV_SCHEMA',
      `label column ${JSON.stringify(label)} not found; the columns are: ${listColumns(header)}${hint}`,
    );
  }
  const featureNames =
    opts.features?.map((f) => f.trim()) ?? header.filter((_, i) => i !== labelIndex);
  if (featureNames.length === 0) {
    throw new MlError(
      'CSV_SCHEMA',
      opts.features === undefined
        ? `the file has no feature columns besides the label ${JSON.stringify(label)}`
        : 'features: the list of feature columns is empty',
    );
  }
  const missing = featureNames.filter((f) => !seen.has(f));
  if (missing.length > 0) {
    throw new MlError(
      'CSV_SCHEMA',
      `feature column${missing.length > 1 ? 's' : ''} ${listColumns(missing)} not found; ` +
        `the columns are: ${listColumns(header)}`,
    );
  }
  if (featureNames.includes(label)) {
    throw new MlError(
      'CSV_SCHEMA',
      `column ${JSON.stringify(label)} is the label and cannot also be a feature`,
    );
  }
  const duplicate = featureNames.find((f, i) => featureNames.indexOf(f) !== i);
  if (duplicate !== undefined) {
    throw new MlError(
      'CSV_SCHEMA',
      `features: column ${JSON.stringify(duplicate)} is listed twice`,
    );
  }
  if (opts.expectedFeatures !== undefined && featureNames.length !== opts.expectedFeatures) {
    throw new MlError(
      'CSV_SCHEMA',
      `expected ${opts.expectedFeatures} feature columns (the model's inputDim), found ` +
        `${featureNames.length}` +
        (opts.features === undefined
          ? ` (every column but the label ${JSON.stringify(label)})`
          : ''),
    );
  }
  return { featureNames, featureIndex: featureNames.map((f) => seen.get(f) as number), labelIndex };
}

/**
 * Parses CSV text with a header line into a {@link Dataset}, checking the schema. Cells of the feature
 * and label columns must be finite numbers (other columns are only counted). Errors name the file line
 * and column: MlError('CSV_PARSE', 'line 17, column "mean_radius": "abc" is not a number').
 */
export function parseCsv(text: string, opts: CsvOptions): Dataset {
  checkOptions(opts);
  let header: string[] | undefined;
  let headerLine = 1;
  let columns: ReturnType<typeof resolveColumns> | undefined;
  let features = new Float32Array(0);
  let labels = new Float32Array(0);
  let numRows = 0;

  const parseCell = (raw: string, line: number, column: string): number => {
    const cell = raw.trim();
    if (cell === '') {
      throw new MlError(
        'CSV_PARSE',
        `line ${line}, column ${JSON.stringify(column)}: empty cell ` +
          '(missing values are not supported: impute or drop the row)',
      );
    }
    const value = NUMBER.test(cell) ? Number(cell) : NaN;
    if (!Number.isFinite(value)) {
      throw new MlError(
        'CSV_PARSE',
        `line ${line}, column ${JSON.stringify(column)}: ${quoteValue(cell)} is not a number`,
      );
    }
    if (!Number.isFinite(Math.fround(value))) {
      throw new MlError(
        'CSV_PARSE',
        `line ${line}, column ${JSON.stringify(column)}: ${cell} is too large for float32`,
      );
    }
    return value;
  };

  forEachRecord(text, (fields, line) => {
    if (header === undefined) {
      header = fields.map((f) => f.trim());
      headerLine = line;
      columns = resolveColumns(header, opts);
      return;
    }
    const cols = columns as NonNullable<typeof columns>;
    if (fields.length !== header.length) {
      throw new MlError(
        'CSV_PARSE',
        `line ${line}: ${fields.length} column${fields.length === 1 ? '' : 's'}, but the header ` +
          `(line ${headerLine}) has ${header.length}`,
      );
    }
    const d = cols.featureIndex.length;
    if (numRows === labels.length) {
      const capacity = Math.max(64, numRows * 2);
      const grownFeatures = new Float32Array(capacity * d);
      grownFeatures.set(features);
      features = grownFeatures;
      const grownLabels = new Float32Array(capacity);
      grownLabels.set(labels);
      labels = grownLabels;
    }
    for (let j = 0; j < d; j++) {
      const index = cols.featureIndex[j] as number;
      features[numRows * d + j] = parseCell(fields[index] as string, line, header[index] as string);
    }
    const labelName = header[cols.labelIndex] as string;
    const label = parseCell(fields[cols.labelIndex] as string, line, labelName);
    if (!Number.isInteger(label) || label < 0 || label > MAX_LABEL) {
      throw new MlError(
        'CSV_PARSE',
        `line ${line}, column ${JSON.stringify(labelName)}: label ${quoteValue(
          (fields[cols.labelIndex] as string).trim(),
        )} must be an integer class index >= 0`,
      );
    }
    labels[numRows] = label;
    numRows++;
  });

  if (header === undefined || columns === undefined) {
    throw new MlError('CSV_SCHEMA', 'the file is empty: expected a header line naming the columns');
  }
  if (numRows === 0) {
    throw new MlError('CSV_SCHEMA', 'the file has a header but no data rows');
  }
  const d = columns.featureIndex.length;
  return {
    features: features.slice(0, numRows * d),
    labels: labels.slice(0, numRows),
    numRows,
    numFeatures: d,
    featureNames: columns.featureNames,
    labelName: header[columns.labelIndex] as string,
  };
}

/** Reads and parses a CSV file; I/O errors become MlError('DATASET', 'cannot read data file X: ...'). */
export async function loadCsv(path: string, opts: CsvOptions): Promise<Dataset> {
  // Imported lazily so that the library stays usable where node:fs does not exist (browsers).
  const { readFile } = await import('node:fs/promises');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const reason =
      e.code === 'ENOENT'
        ? 'no such file'
        : e.code === 'EACCES'
          ? 'permission denied'
          : e.code === 'EISDIR'
            ? 'it is a directory'
            : (e.message ?? String(err));
    throw new MlError('DATASET', `cannot read data file ${path}: ${reason}`);
  }
  try {
    return parseCsv(text, opts);
  } catch (err) {
    if (err instanceof MlError) throw new MlError(err.code, `${path}: ${err.message}`);
    throw err;
  }
}

const numberCell = (x: number): string => (Object.is(x, -0) ? '-0' : String(x));

function csvField(s: string): string {
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Writes a dataset as CSV (features, then the label) that {@link parseCsv} reads back exactly. */
export function datasetToCsv(ds: Dataset): string {
  checkDataset(ds);
  const d = ds.numFeatures;
  const lines = [[...ds.featureNames, ds.labelName].map(csvField).join(',')];
  for (let r = 0; r < ds.numRows; r++) {
    const cells: string[] = [];
    // String() of a float32 value gives the shortest double that reads back as the same float32.
    for (let j = 0; j < d; j++) cells.push(numberCell(ds.features[r * d + j] as number));
    cells.push(String(ds.labels[r]));
    lines.push(cells.join(','));
  }
  return `${lines.join('\n')}\n`;
}
