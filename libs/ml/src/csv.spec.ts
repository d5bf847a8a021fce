import fc from 'fast-check';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { datasetToCsv, loadCsv, parseCsv, type CsvOptions } from './csv';
import type { Dataset } from './dataset';
import { MlError, type MlErrorCode } from './errors';

const opts: CsvOptions = { label: 'y' };

function csvError(text: string, options: CsvOptions = opts): MlError {
  try {
    parseCsv(text, options);
  } catch (err) {
    expect(err).toBeInstanceOf(MlError);
    return err as MlError;
  }
  throw new Error('parseCsv accepted the input');
}

describe('parseCsv', () => {
  it('reads features in file order and the label, with the header names', () => {
    const ds = parseCsv('a,b,y\n1,2.5,0\n-3,4e-2,1\n', opts);
    expect(ds.featureNames).toEqual(['a', 'b']);
    expect(ds.labelName).toBe('y');
    expect(ds.numRows).toBe(2);
    expect(ds.numFeatures).toBe(2);
    expect([...ds.features]).toEqual([1, 2.5, -3, Math.fround(0.04)]);
    expect([...ds.labels]).toEqual([0, 1]);
  });

  it('accepts CRLF line ends, no trailing newline, blank lines, a BOM and quoted headers', () => {
    const ds = parseCsv('\uFEFF"a","b, with comma",y\r\n1,2,0\r\n\r\n3,"4",1', opts);
    expect(ds.featureNames).toEqual(['a', 'b, with comma']);
    expect([...ds.features]).toEqual([1, 2, 3, 4]);
    expect([...ds.labels]).toEqual([0, 1]);
  });

  it('reads the requested features in the requested order and ignores the other columns', () => {
    const ds = parseCsv('id,a,b,y\nx17,1,2,0\nx18,3,4,1\n', { label: 'y', features: ['b', 'a'] });
    expect(ds.featureNames).toEqual(['b', 'a']);
    expect([...ds.features]).toEqual([2, 1, 4, 3]);
  });

  it.each<[string, string, CsvOptions, MlErrorCode, string]>([
    [
      'empty file',
      '',
      opts,
      'CSV_SCHEMA',
      'the file is empty: expected a header line naming the columns',
    ],
    [
      'missing header',
      '1,2,0\n3,4,1\n',
      opts,
      'CSV_SCHEMA',
      'line 1 holds numbers, not column names',
    ],
    [
      'missing label',
      'a,b,c\n1,2,3\n',
      { label: 'diagnosis' },
      'CSV_SCHEMA',
      'label column "diagnosis" not found; the columns are: "a", "b", "c"',
    ],
    ['semicolons', 'a;b;y\n1;2;0\n', opts, 'CSV_SCHEMA', 'columns must be separated by commas'],
    [
      'missing feature',
      'a,b,y\n1,2,0\n',
      { label: 'y', features: ['a', 'c', 'd'] },
      'CSV_SCHEMA',
      'feature columns "c", "d" not found; the columns are: "a", "b", "y"',
    ],
    [
      'label as feature',
      'a,y\n1,0\n',
      { label: 'y', features: ['a', 'y'] },
      'CSV_SCHEMA',
      'column "y" is the label and cannot also be a feature',
    ],
    [
      'duplicate column',
      'a,b,a,y\n1,2,3,0\n',
      opts,
      'CSV_SCHEMA',
      'header: column name "a" appears twice (columns 1 and 3)',
    ],
    ['unnamed column', 'a,,y\n1,2,0\n', opts, 'CSV_SCHEMA', 'header: column 2 has no name'],
    [
      'only a label',
      'y\n1\n',
      opts,
      'CSV_SCHEMA',
      'the file has no feature columns besides the label "y"',
    ],
    [
      'wrong feature count',
      'a,b,y\n1,2,0\n',
      { label: 'y', expectedFeatures: 30 },
      'CSV_SCHEMA',
      "expected 30 feature columns (the model's inputDim), found 2",
    ],
    ['no rows', 'a,b,y\n', opts, 'CSV_SCHEMA', 'the file has a header but no data rows'],
    [
      'short row',
      'a,b,y\n1,2,0\n1,2\n',
      opts,
      'CSV_PARSE',
      'line 3: 2 columns, but the header (line 1) has 3',
    ],
    [
      'text cell',
      'a,b,y\n1,2,0\n1,abc,0\n',
      opts,
      'CSV_PARSE',
      'line 3, column "b": "abc" is not a number',
    ],
    [
      'empty cell',
      'a,b,y\n1,,0\n',
      opts,
      'CSV_PARSE',
      'line 2, column "b": empty cell (missing values are not supported',
    ],
    ['NaN', 'a,b,y\n1,NaN,0\n', opts, 'CSV_PARSE', 'line 2, column "b": "NaN" is not a number'],
    [
      'infinite',
      'a,b,y\n1,1e999,0\n',
      opts,
      'CSV_PARSE',
      'line 2, column "b": "1e999" is not a number',
    ],
    [
      'float32 overflow',
      'a,b,y\n1,1e39,0\n',
      opts,
      'CSV_PARSE',
      'line 2, column "b": 1e39 is too large for float32',
    ],
    [
      'fractional label',
      'a,y\n1,0.5\n',
      opts,
      'CSV_PARSE',
      'line 2, column "y": label "0.5" must be an integer class index >= 0',
    ],
    [
      'negative label',
      'a,y\n1,-1\n',
      opts,
      'CSV_PARSE',
      'line 2, column "y": label "-1" must be an integer class index >= 0',
    ],
    ['unclosed quote', 'a,y\n"1,0\n', opts, 'CSV_PARSE', 'line 2: a quoted field is never closed'],
  ])('reports %s', (_, text, options, code, message) => {
    const err = csvError(text, options);
    expect(err.code).toBe(code);
    expect(err.message).toContain(message);
  });

  it('names the file line, counting blank lines and multi-line quoted fields', () => {
    const err = csvError('"a\nb",y\n\n1,0\n2,x\n');
    expect(err.message).toBe('line 5, column "y": "x" is not a number');
  });
});

describe('datasetToCsv', () => {
  it('round-trips any float32 dataset exactly through parseCsv', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), {
          minLength: 1,
          maxLength: 60,
        }),
        (numFeatures, values) => {
          const numRows = Math.ceil(values.length / numFeatures);
          const features = new Float32Array(numRows * numFeatures);
          features.set(values);
          const ds: Dataset = {
            features,
            labels: Float32Array.from({ length: numRows }, (_, i) => i % 3),
            numRows,
            numFeatures,
            featureNames: Array.from({ length: numFeatures }, (_, i) => `f,${i} "q"`),
            labelName: 'label',
          };
          const back = parseCsv(datasetToCsv(ds), { label: 'label' });
          expect(back.featureNames).toEqual(ds.featureNames);
          expect(back.labels).toEqual(ds.labels);
          expect(back.features).toEqual(ds.features);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('loadCsv', () => {
  it('reads the shipped breast-cancer file: 569 rows, 30 features, 212 malignant', async () => {
    const ds = await loadCsv(
      join(import.meta.dirname, '../../../datasets/breast-cancer-wisconsin.csv'),
      {
        label: 'diagnosis',
        expectedFeatures: 30,
      },
    );
    expect(ds.numRows).toBe(569);
    expect(ds.featureNames[0]).toBe('mean_radius');
    expect(ds.featureNames.at(-1)).toBe('worst_fractal_dimension');
    expect(ds.labels.reduce((a, b) => a + b, 0)).toBe(212);
  });

  it('turns a missing file into a DATASET error naming the file', async () => {
    const path = join(tmpdir(), 'confide-no-such-file.csv');
    await expect(loadCsv(path, opts)).rejects.toThrow(
      expect.objectContaining({
        code: 'DATASET',
        message: `cannot read data file ${path}: no such file`,
      }) as Error,
    );
  });
});
