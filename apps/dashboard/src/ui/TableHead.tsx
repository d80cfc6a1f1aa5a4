/**
 * A table's header row. A `false` column is left out (one shown only sometimes); `actions` adds a
 * last column for the rows' buttons, named for screen readers only.
 */
export function TableHead({ columns, actions = false }: { columns: (string | false)[]; actions?: boolean }) {
  return (
    <thead>
      <tr>
        {columns.map((name) =>
          name === false ? null : (
            <th scope="col" key={name}>
              {name}
            </th>
          ),
        )}
        {actions && (
          <th scope="col">
            <span className="visually-hidden">Actions</span>
          </th>
        )}
      </tr>
    </thead>
  );
}
