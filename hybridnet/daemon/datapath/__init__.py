"""The node-wide datapath, reconciled: ``desired`` (pure: the node's view and host facts to
kernel objects and problems), ``observe`` (reads only what carries hybridnet's marks),
``plan`` (pure: the difference, as ordered operations), ``apply`` (the only writer), and the
``Reconciler`` that chains them. The routing design is in ``desired``'s docstring."""
