"""Drivers of a unit from other training frameworks, on the user-loop API (``train.user_loop``).

``ticketlab.run(config, model=..., data=..., train=my_train)`` calls ``my_train(model, unit)``;
inside it, a framework's trainer trains the model and one of these callbacks tells ticketlab
about its optimizer steps and evaluations:

* :class:`ticketlab.integrations.lightning.LotteryTicket`, a Lightning ``Callback``
  (extra ``lightning``);
* :class:`ticketlab.integrations.hf.LotteryTicketCallback`, a Hugging Face ``TrainerCallback``
  (extra ``hf``).

Each module imports its framework only when imported itself.
"""
